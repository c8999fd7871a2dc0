"""Search spaces as YAML: schema, validation and the Optuna define-by-run function.

A space file has these top-level sections (all but ``params`` optional)::

    name: cpu                  # experiment name prefix (default: the file's stem)
    data: data/fer2013.csv     # used when --data is not given
    metric: val_accuracy       # val_accuracy (max) | val_loss (min)
    objectives: {val_accuracy: max, latency_ms: min}   # several (search.objectives)
    constraints: {latency_ms: {max: 5.0}}
    search:    {sampler: tpe, seed: 0, num_samples: 8, max_concurrent: 1,
                scheduler: asha, grace_period: 1, reduction_factor: 3, rung_metric: "",
                max_failures: 0}
    resources: {cpus_per_trial: auto, gpus_per_trial: auto, trials_per_gpu: 4}
    retrain:   {epochs: 20, seeds: [0], train_on_public: false, tta: true, top_k: 1,
                params: {keep_best: true, erase_prob: 0.5}}   # set over the winner's config
    params:                    # any fer_models.TrainConfig field: a fixed value or a distribution
      backbone:   {choice: [resnet18, mobilenetv3_small_100]}
      lr:         {loguniform: [1.0e-4, 1.0e-2]}
      dropout:    {uniform: [0.0, 0.5], step: 0.1}     # step = q-step
      input_size: {int: [48, 96], step: 16}            # int range; log: true also allowed
      epochs: 6                                        # fixed value

``input_size`` is conditional on ``backbone``: an int range starts at each backbone's minimum
(inception_v3: 75), so Optuna never proposes an input the backbone refuses; a file whose fixed
size or size choices are below a chosen backbone's minimum is rejected.

Example:
    >>> from search.space import load_space
    >>> space = load_space("spaces/smoke.yaml")
    >>> space.search.num_samples, space.max_epochs
    (4, 2)
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_models.checkpoint import CONFIG_FILE, MODEL_FILE, is_model_folder
from fer_models.config import TrainConfig
from fer_models.models import min_input_size
from fer_models.profile import PROFILE_METRICS
from fer_models.textfiles import InputFileError, load_yaml
from fer_models.validation import ConfigError, check_field
from fer_models.weights import WeightsError, check_weights_file

from .objectives import parse_constraints, parse_objectives
from .samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLERS

SCHEDULERS = ("asha", "none")    # search.scheduler: ASHA early stopping, or every trial to the end
METRICS = {"val_accuracy": "max", "val_loss": "min"}
# What ASHA may compare at its rungs: the search metric, or the training loss, which ranks configs
# earlier when validation is small and noisy (bench/bench_asha.py).
RUNG_METRICS = {**METRICS, "train_loss": "min"}
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")


class SpaceError(ValueError):
    """An invalid search-space file. The message names the file and the key."""


@dataclass
class SearchSettings:
    sampler: str = "tpe"
    seed: int = 0
    num_samples: int = 8
    max_concurrent: int = 1
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 3
    rung_metric: str = ""            # what ASHA compares at a rung: "" (= metric) or train_loss
    max_failures: int = 0            # retries per trial for infrastructure failures
    checkpoint: bool = True          # a checkpoint per epoch (needed to resume a trial)
    checkpoint_every_s: float = 0.0  # >0: a trial checkpoints at most this often (seconds since
                                     # its last one): for epochs of seconds, where a checkpoint
                                     # per epoch costs the trial and the driver more than a
                                     # retry redoes (bench/bench_scale.py); 0: every epoch
    exact_resume: bool = True        # false: Tune snapshots the search about once an epoch, not
                                     # after every result (for hundreds of trials: the driver's
                                     # cost per result stays flat, bench/bench_scale.py); a trial
                                     # that ended just before a driver crash may then run again
                                     # on --resume
    drop_duplicates: bool = False    # drop Training faces pixel-identical to a PublicTest/
                                     # PrivateTest one (see fer_models.audit)
    time_budget_minutes: float = 0.0  # >0: stop the search (running trials too) after this long
    plateau_trials: int = 0          # >0: stop the search after this many finished trials in a
    plateau_gain: float = 0.0        # row that beat the best by no more than plateau_gain
                                     # (search/plateau.py)


@dataclass
class Resources:
    cpus_per_trial: Any = "auto"     # auto: all CPUs / max_concurrent (no GPU) or 1 (with GPU)
    gpus_per_trial: Any = "auto"     # auto: 1 / trials_per_gpu when the cluster has GPUs, else 0
    trials_per_gpu: int = 4


@dataclass
class RetrainSettings:
    epochs: int = 0                  # 0: the winner's own epochs
    seeds: list = field(default_factory=lambda: [0])
    train_on_public: bool = False
    tta: bool = True                 # also report ten-crop+flip accuracy (beside the plain one)
    top_k: int = 1                   # >1: also retrain the next best distinct configs, ensemble them
    ensemble_seeds: bool = False     # the ensemble also averages the winner's other seeds (with
                                     # top_k 1 and 2 seeds: one config, its mean +- sd and ensemble)
    pareto: bool = False             # several objectives: retrain every point of the Pareto front
    pareto_max: int = 5              # (up to this many), each scored once (pareto.csv)
    params: dict = field(default_factory=dict)  # TrainConfig values the retrain sets over the
                                     # winner's: what a short trial cannot judge (regularisation
                                     # for a long schedule, keep_best)


@dataclass
class Param:
    name: str
    kind: str                        # fixed | choice | uniform | loguniform | int
    value: Any = None                # fixed value, or the choices list
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    default: Any = None              # the value a person would pick without a search (see
                                     # SearchSpace.default_config); None: derived

    def contains(self, value) -> bool:
        """Whether the search could propose ``value`` (a choice, or a range point on its step)."""
        if self.kind == "fixed":
            return value == self.value
        if self.kind == "choice":
            return any(value == v and type(value) is type(v) for v in self.value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return self.kind != "int" or float(value).is_integer()

    def derived_default(self):
        """TrainConfig's own default where the search could propose it; else the first choice,
        or the middle of a range (geometric for log ranges), on its step."""
        own = getattr(TrainConfig(), self.name)
        if self.contains(own):
            return own
        if self.kind == "choice":
            return self.value[0]
        log = self.kind == "loguniform" or self.log
        middle = math.sqrt(self.low * self.high) if log else (self.low + self.high) / 2
        if self.step:
            middle = self.low + round((middle - self.low) / self.step) * self.step
            middle = min(max(middle, self.low), self.high)
        return int(round(middle)) if self.kind == "int" else float(middle)


@dataclass
class SearchSpace:
    path: Path
    name: str
    data: str | None
    metric: str
    mode: str
    search: SearchSettings
    resources: Resources
    retrain: RetrainSettings
    params: dict[str, Param]
    objectives: dict[str, str] = field(default_factory=dict)   # search.objectives: the first ranks
    constraints: dict[str, dict] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def measures(self) -> bool:
        """Whether trials measure params / MACs / latency (an objective or constraint uses one)."""
        return any(name in PROFILE_METRICS for name in [*self.objectives, *self.constraints])

    @property
    def max_epochs(self) -> int:
        p = self.params.get("epochs")
        if p is None:
            return TrainConfig().epochs
        return int(p.value if p.kind == "fixed" else (max(p.value) if p.kind == "choice" else p.high))

    def backbones(self) -> list[str]:
        p = self.params.get("backbone")
        if p is None:
            return [TrainConfig().backbone]
        return list(p.value) if p.kind == "choice" else [p.value]

    def cap_epochs(self, cap: int) -> None:
        """No trial trains more than ``cap`` epochs (``--max-epochs``): every value of the
        ``epochs`` param is cut to ``cap``; a range or choice that collapses becomes fixed."""
        p = self.params.get("epochs")
        if p is None or p.kind == "fixed":
            self.params["epochs"] = Param("epochs", "fixed", value=min(cap, p.value if p else cap))
        elif p.kind == "choice":
            p.value = sorted({min(v, cap) for v in p.value})
            if len(p.value) == 1:
                self.params["epochs"] = Param("epochs", "fixed", value=p.value[0])
        else:
            p.high = min(p.high, cap)
            if p.low >= p.high:
                self.params["epochs"] = Param("epochs", "fixed", value=p.high)

    def default_config(self) -> dict[str, Any]:
        """The searched params' values a person would run without a search: each param's
        ``default:`` in the file, else :meth:`Param.derived_default`. Every search runs it as
        its first trial, so the winner is measured against it at the same fidelity."""
        config = {}
        for name, p in self.params.items():
            if p.kind != "fixed":
                config[name] = p.default if p.default is not None else p.derived_default()
        backbone = config.get("backbone", self.backbones()[0])
        size = self.params.get("input_size")
        if size is not None and size.kind == "int" and config["input_size"] < min_input_size(backbone):
            config["input_size"] = _round_up_to_step(min_input_size(backbone), size.low, size.step or 1)
        return config

    def is_default(self, config: dict) -> bool:
        """Whether a trial's ``config`` is :meth:`default_config` (floats to 1e-9)."""
        def same(a, b) -> bool:
            if isinstance(a, float) or isinstance(b, float):
                return isinstance(a, (int, float)) and isinstance(b, (int, float)) \
                    and math.isclose(a, b, rel_tol=1e-9)
            return a == b
        default = self.default_config()
        return bool(default) and all(same(config.get(k), v) for k, v in default.items())

    def fixed(self) -> dict[str, Any]:
        return {k: p.value for k, p in self.params.items() if p.kind == "fixed"}

    def suggest(self, trial) -> dict[str, Any]:
        """Optuna define-by-run: suggests every distribution, returns the fixed values."""
        backbone = self.params.get("backbone")
        if backbone is not None and backbone.kind == "choice":
            chosen = trial.suggest_categorical("backbone", backbone.value)
        else:
            chosen = self.backbones()[0]
        for p in self.params.values():
            if p.kind == "fixed" or p.name == "backbone":
                continue
            if p.kind == "choice":
                trial.suggest_categorical(p.name, p.value)
            elif p.kind == "int":
                low = p.low
                if p.name == "input_size":  # conditional: start at this backbone's minimum
                    low = _round_up_to_step(max(p.low, min_input_size(chosen)), p.low, p.step or 1)
                trial.suggest_int(p.name, int(low), int(p.high), step=int(p.step or 1), log=p.log)
            else:
                trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step,
                                    log=p.kind == "loguniform")
        return self.fixed()


def _round_up_to_step(value: int, origin: int, step: int) -> int:
    return origin + math.ceil((value - origin) / step) * step


# --- loading and validation --------------------------------------------------------------------

_SECTIONS = {"name", "data", "metric", "objectives", "constraints", "search", "resources",
             "retrain", "params"}


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a space file; raises SpaceError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such search-space file")
    try:
        raw = load_yaml(path)  # UTF-8 only, a key given twice refused
    except InputFileError as e:
        raise SpaceError(str(e)) from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with a 'params' section, got "
                         f"{type(raw).__name__}")
    err = lambda key, msg: SpaceError(f"{path}: {key}: {msg}")  # noqa: E731
    _reject_non_finite(raw, "", err)
    _reject_unknown(raw, _SECTIONS, "", err)
    if not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise err("params", "required: a mapping of TrainConfig fields to values or distributions")
    metric = raw.get("metric", "val_accuracy")
    if metric not in METRICS:
        raise err("metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    objectives = parse_objectives(raw.get("objectives"), metric, err)
    if "metric" in raw and next(iter(objectives)) != metric:
        raise err("metric", f"{metric} differs from the first objective "
                  f"{next(iter(objectives))}; drop metric (the first objective is the metric)")
    metric = next(iter(objectives))
    constraints = parse_constraints(raw.get("constraints"), err)
    search = _section(raw, "search", SearchSettings, err)
    resources = _section(raw, "resources", Resources, err)
    retrain = _section(raw, "retrain", RetrainSettings, err)
    _check_settings(search, resources, retrain, err)
    params = {name: _param(name, spec, err) for name, spec in raw["params"].items()}
    space = SearchSpace(path=path, name=str(raw.get("name") or path.stem),
                        data=raw.get("data"), metric=metric, mode=METRICS[metric],
                        search=search, resources=resources, retrain=retrain, params=params,
                        objectives=objectives, constraints=constraints)
    _check_retrain_params(space, err)
    if retrain.pareto and not space.multi_objective:
        raise err("retrain.pareto", "needs several objectives (objectives: {val_accuracy: max, "
                  "latency_ms: min}): there is no front to retrain")
    if retrain.pareto_max < 1:
        raise err("retrain.pareto_max", f"must be >= 1, got {retrain.pareto_max}")
    if space.multi_objective and search.plateau_trials:
        raise err("search.plateau_trials", "needs one objective: with several, no single best "
                  "can stop improving")
    if space.multi_objective and search.sampler not in MULTI_OBJECTIVE_SAMPLERS:
        raise err("search.sampler", f"{search.sampler} optimises one objective; with several "
                  f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
    _check_backbones(space, err)
    _check_weight_files(space, err)
    return space


def check_settings(space: SearchSpace, source: str) -> None:
    """The search, resources and retrain rules again, after ``source`` (command-line
    overrides) changed values: an override passes only what the file could hold."""
    err = lambda key, msg: SpaceError(f"{source}: {key}: {msg}")  # noqa: E731
    _check_settings(space.search, space.resources, space.retrain, err)


def _reject_non_finite(value, key: str, err) -> None:
    """NaN and infinities anywhere in the file (YAML's .nan, .inf): every comparison a rule
    makes with NaN is false, so a rule would let it through."""
    if isinstance(value, float) and not math.isfinite(value):
        raise err(key or "(top level)", f"{value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_non_finite(v, f"{key}.{k}" if key else str(k), err)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_non_finite(v, f"{key}[{i}]", err)


def _reject_unknown(mapping: dict, known, prefix: str, err) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
            raise err(f"{prefix}{key}", f"unknown key{hint}")


def _section(raw: dict, name: str, cls, err):
    values = raw.get(name) or {}
    if not isinstance(values, dict):
        raise err(name, f"must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(values, fields, f"{name}.", err)
    defaults = cls()
    for key, value in values.items():
        expected = type(getattr(defaults, key))
        if expected is str and getattr(defaults, key) == "auto":  # 'auto' or a number
            if value != "auto" and not _is_number(value):
                raise err(f"{name}.{key}", f"must be 'auto' or a number, got {value!r}")
            continue
        if not _matches(value, expected):
            raise err(f"{name}.{key}", f"must be {expected.__name__}, got {value!r}")
    return cls(**values)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _matches(value, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return _is_number(value)
    return isinstance(value, expected)


def _check_settings(search: SearchSettings, res: Resources, retrain: RetrainSettings, err) -> None:
    if search.sampler not in SAMPLERS:
        raise err("search.sampler", f"unknown sampler {search.sampler!r}; one of {', '.join(SAMPLERS)}")
    if search.scheduler not in SCHEDULERS:
        raise err("search.scheduler", f"unknown scheduler {search.scheduler!r}; one of {', '.join(SCHEDULERS)}")
    for key in ("num_samples", "max_concurrent", "grace_period"):
        if getattr(search, key) < 1:
            raise err(f"search.{key}", f"must be >= 1, got {getattr(search, key)}")
    if search.reduction_factor < 2:
        raise err("search.reduction_factor", f"must be >= 2, got {search.reduction_factor}")
    if search.rung_metric and search.rung_metric not in RUNG_METRICS:
        raise err("search.rung_metric", f"must be one of {', '.join(RUNG_METRICS)} (or empty: the "
                                        f"search metric), got {search.rung_metric!r}")
    if not 0 <= search.seed < 2**32:  # Optuna's samplers seed numpy with it
        raise err("search.seed", f"must be an integer in [0, 4294967295], got {search.seed}")
    if search.time_budget_minutes < 0:
        raise err("search.time_budget_minutes", "must be >= 0 (0 = no budget)")
    if search.max_failures < 0:
        raise err("search.max_failures", "must be >= 0")
    if search.plateau_trials < 0:
        raise err("search.plateau_trials", "must be >= 0 (0 = no plateau stop)")
    if search.plateau_gain < 0:
        raise err("search.plateau_gain", "must be >= 0 (in the metric's units)")
    if search.checkpoint_every_s < 0:
        raise err("search.checkpoint_every_s", "must be >= 0 (0 = a checkpoint every epoch)")
    for key in ("cpus_per_trial", "gpus_per_trial"):
        v = getattr(res, key)
        if v != "auto" and v < 0:
            raise err(f"resources.{key}", f"must be >= 0, got {v}")
    if res.trials_per_gpu < 1:
        raise err("resources.trials_per_gpu", "must be >= 1")
    if retrain.epochs < 0:
        raise err("retrain.epochs", "must be >= 0 (0 = the winner's own epochs)")
    if not _matches(retrain.top_k, int) or retrain.top_k < 1:
        raise err("retrain.top_k", f"must be an integer >= 1, got {retrain.top_k!r}")
    if not retrain.seeds or not all(_matches(s, int) for s in retrain.seeds):
        raise err("retrain.seeds", f"must be a non-empty list of integers, got {retrain.seeds!r}")
    for seed in retrain.seeds:  # each becomes a TrainConfig seed: the field's own rule
        _check_value("retrain.seeds", "seed", seed, err)
    if len(set(retrain.seeds)) != len(retrain.seeds):  # the same run twice: a false spread
        raise err("retrain.seeds", f"a seed is given twice in {retrain.seeds!r}")
    if retrain.epochs:
        _check_value("retrain.epochs", "epochs", retrain.epochs, err)
    own = {"epochs": "retrain.epochs", "seed": "retrain.seeds",
           "train_on_public": "retrain.train_on_public"}
    for name, value in retrain.params.items():
        key = f"retrain.params.{name}"
        if name in own:
            raise err(key, f"set by {own[name]}, not here")
        if name in _MODEL_FIELDS:  # the search chose (and measured) a model: the retrain trains it
            raise err(key, "changes the model the search chose; retrain.params sets how the "
                           "winner is trained (regularisation, keep_best), not what it is")
        if name not in _FIELD_TYPES or name in _NOT_TUNABLE:
            _reject_unknown({name: None}, set(_FIELD_TYPES) - _NOT_TUNABLE - set(own),
                            "retrain.params.", err)
        if isinstance(value, (dict, list)):
            raise err(key, f"must be one fixed value (the retrain samples nothing), got {value!r}")
        _check_value(key, name, value, err)


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
_NOT_TUNABLE = {"extra", "device"}
_MODEL_FIELDS = {"backbone", "input_size", "in_chans", "head_hidden", "pre_logits", "stem_pool",
                 "pretrained", "pretrained_file"}


def _check_retrain_params(space: "SearchSpace", err) -> None:
    """retrain.params against params: a searched key would discard the search's choice (and
    could make distinct winners identical ensemble members); keep_best needs PublicTest."""
    for name in space.retrain.params:
        p = space.params.get(name)
        if p is not None and p.kind != "fixed":
            raise err(f"retrain.params.{name}", f"params.{name} is searched; the retrain would "
                      "discard the search's choice (fix it in params, or drop it here)")
    keep = space.params.get("keep_best")
    keep_best = space.retrain.params.get("keep_best", keep is not None and (
        keep.value is True if keep.kind == "fixed" else True in keep.value))
    if keep_best and space.retrain.train_on_public:
        key = "retrain.params.keep_best" if "keep_best" in space.retrain.params else "params.keep_best"
        raise err(key, "picks an epoch on PublicTest, which retrain.train_on_public trains on; "
                       "use one or the other")


def _param(name: str, spec, err) -> Param:
    key = f"params.{name}"
    if name not in _FIELD_TYPES or name in _NOT_TUNABLE:
        _reject_unknown({name: None}, set(_FIELD_TYPES) - _NOT_TUNABLE, "params.", err)
    ftype = _FIELD_TYPES[name]
    if not isinstance(spec, dict):
        _check_value(key, name, spec, err)
        return Param(name, "fixed", value=spec)
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1:
        raise err(key, f"a distribution needs exactly one of {', '.join(DISTRIBUTIONS)}; got keys "
                       f"{', '.join(map(str, spec)) or 'none'}")
    kind = kinds[0]
    _reject_unknown({k: v for k, v in spec.items() if k != kind}, {"step", "log", "default"},
                    f"{key}.", err)
    param = _distribution(name, kind, spec, ftype, key, err)
    if "default" in spec:
        default = spec["default"]
        if ftype == "float" and _is_number(default):
            default = float(default)
        _check_value(f"{key}.default", name, default, err)
        if not param.contains(default):
            raise err(f"{key}.default", f"{default!r} is not a value this {kind} can propose")
        param.default = default
    return param


def _distribution(name: str, kind: str, spec: dict, ftype: str, key: str, err) -> Param:
    bounds = spec[kind]
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise err(f"{key}.choice", "must be a non-empty list")
        for v in bounds:
            _check_value(f"{key}.choice", name, v, err)
        if len(set(map(repr, bounds))) != len(bounds):
            raise err(f"{key}.choice", f"has duplicate values: {bounds}")
        if "step" in spec or "log" in spec:
            raise err(key, "step/log apply to ranges, not choice")
        return Param(name, "choice", value=list(bounds))
    if ftype not in ("int", "float"):
        raise err(key, f"{name} is {ftype}: use a fixed value or choice, not {kind}")
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
        raise err(f"{key}.{kind}", f"must be [low, high] numbers, got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise err(f"{key}.{kind}", f"empty or inverted range: low {low} must be < high {high}")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise err(f"{key}.int", f"bounds must be integers, got {bounds}")
    if ftype == "int" and kind != "int":
        raise err(key, f"{name} is an integer: use int: [low, high]")
    if kind == "loguniform" and low <= 0:
        raise err(f"{key}.loguniform", f"low must be > 0, got {low}")
    step = spec.get("step")
    if step is not None and (not _is_number(step) or step <= 0 or step > high - low):
        raise err(f"{key}.step", f"must be a number in (0, high - low], got {step!r}")
    if step is not None and kind == "loguniform":
        raise err(f"{key}.step", "a q-step cannot be combined with loguniform")
    if kind == "int" and step is not None and not isinstance(step, int):
        raise err(f"{key}.step", f"must be an integer for int ranges, got {step!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and kind != "int"):
        raise err(f"{key}.log", "log: true is for int ranges (use loguniform for floats)")
    if log and step not in (None, 1):
        raise err(f"{key}.log", "log: true cannot be combined with a step")
    for end in (low, high):  # both ends can be proposed: each must be a value the field accepts
        _check_value(f"{key}.{kind}", name, float(end) if ftype == "float" else end, err)
    return Param(name, kind, low=low, high=high, step=step, log=log)


def _check_value(key: str, name: str, value, err) -> None:
    """The field's own rule (fer_models.validation), reported at ``key`` of this file."""
    try:
        check_field(name, value)
    except ConfigError as e:
        raise err(key, str(e).removeprefix(f"{name}: ")) from None


def _check_weight_files(space: SearchSpace, err) -> None:
    """Every pretrained_file a trial could get reads as weights here (the driver sees what trials
    see): a weights file, or a finished model folder. ImageNet weights (``pretrained``) are
    checked against the cache by search.weights, before Ray starts."""
    p = space.params.get("pretrained_file")
    values = [v for v in ([] if p is None else [p.value] if p.kind == "fixed" else p.value)
              if v is not None]
    for v in values:
        if Path(v).is_dir():
            if not is_model_folder(v):
                raise err("params.pretrained_file", f"{v}: a folder without {MODEL_FILE} and "
                          f"{CONFIG_FILE} (not a finished model folder)")
            continue
        if not Path(v).is_file():
            raise err("params.pretrained_file", f"{v}: no such weights file")
        try:
            check_weights_file(v)
        except WeightsError as e:
            raise err("params.pretrained_file", str(e)) from None
    # Trials run in their own folders (Ray changes into them): hand them absolute paths.
    absolute = lambda v: v if v is None else str(Path(v).resolve())  # noqa: E731
    if p is not None:
        p.value = absolute(p.value) if p.kind == "fixed" else [absolute(v) for v in p.value]
    pretrained = space.params.get("pretrained")
    if values and pretrained is not None and (pretrained.value is True if pretrained.kind == "fixed"
                                              else True in pretrained.value):
        raise err("params.pretrained", "pretrained: true (ImageNet weights) and a "
                  "pretrained_file cannot both apply; give one")


def _check_backbones(space: SearchSpace, err) -> None:
    size = space.params.get("input_size") or Param("input_size", "fixed", value=TrainConfig().input_size)
    for b in space.backbones():
        smallest = min_input_size(b)
        if size.kind == "fixed" and size.value < smallest:
            raise err("params.input_size", f"{size.value} px is below {b}'s minimum of {smallest} px")
        if size.kind == "choice" and min(size.value) < smallest:
            raise err("params.input_size", f"choice {size.value} includes sizes below {b}'s minimum "
                      f"of {smallest} px; use an int range (int: [low, high], step: N), which "
                      "starts at each backbone's minimum, or drop the small sizes")
        if size.kind in ("int",) and size.high < smallest:
            raise err("params.input_size", f"range tops out at {size.high} px, below {b}'s "
                      f"minimum of {smallest} px")
