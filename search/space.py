"""Search spaces as YAML: schema, validation and the Optuna define-by-run function.

A space file has these top-level sections (all but ``params`` optional)::

    name: cpu                  # experiment name prefix (default: the file's stem)
    data: data/fer2013.csv     # used when --data is not given
    objectives: val_accuracy   # what ranks trials: val_accuracy | val_loss, or several:
                               # {val_accuracy: max, latency_ms: min} (search.objectives)
    constraints: {latency_ms: {max: 5.0}}
    search:    {sampler: random, seed: 0, num_samples: 8, max_concurrent: 1,
                asha: {grace_period: auto, reduction_factor: 3, rung_metric: ""},  # or asha: false
                checkpoint: true, max_failures: 0}
    resources: {cpus_per_trial: auto, gpus_per_trial: auto, trials_per_gpu: 4}
    retrain:   {epochs: 20, seeds: [0], tta: true, top_k: 1,
                params: {keep_best: true, erase_prob: 0.5}}   # set over the winner's config
    params:                    # a fer_models.TrainConfig field (not device, extra,
                               # train_on_public): a fixed value or a distribution
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
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_models.checkpoint import CONFIG_FILE, MODEL_FILE, is_model_folder
from fer_models.config import TrainConfig
from fer_models.models import ModelConfigError, check_model_option, min_input_size
from fer_models.profile import PROFILE_METRICS
from fer_models.textfiles import InputFileError, load_yaml
from fer_models.weights import WeightsError, check_weights_file, check_weights_source

from .distributions import (Fixed, Param, check_value, field_types, is_number, parse_param,
                            reject_unknown)
from .objectives import RANKING, parse_constraints, parse_objectives
from .samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLERS
from .space_history import RENAMED, RETYPED, upgrade

# What ASHA may compare at its rungs: the search metric, or the training loss, which ranks configs
# earlier when validation is small and noisy (bench/bench_asha.py).
RUNG_METRICS = {**RANKING, "train_loss": "min"}


class SpaceError(ValueError):
    """An invalid search-space file. The message names the file and the key."""


@dataclass
class AshaSettings:
    """``search.asha``: ASHA's early stopping (``asha: false``: every trial runs to the end)."""
    grace_period: Any = "auto"       # the first rung, in epochs; auto: a third of the trials'
                                     # epochs (first_rung)
    reduction_factor: int = 3        # 1 in this many trials goes on at each rung
    rung_metric: str = ""            # what ASHA compares at a rung: "" (the first objective) or
                                     # train_loss

    def first_rung(self, max_epochs: int) -> int:
        """The epoch of the first rung for trials of at most ``max_epochs``: ``grace_period``,
        or by default a third of the epochs (at least 1), where the replay bench's table ranks
        configs as their final epoch does (Spearman 0.84 at epoch 3 of 10, 0.15 at epoch 1:
        bench/README.md, "bench_replay.py"). Never past the last epoch.

        >>> AshaSettings().first_rung(12), AshaSettings().first_rung(2), AshaSettings(5).first_rung(3)
        (4, 1, 3)
        """
        grace = max(1, max_epochs // 3) if self.grace_period == "auto" else self.grace_period
        return min(grace, max_epochs)


@dataclass
class SearchSettings:
    sampler: str = "random"          # over 10-20 trials, TPE did no better than random
                                     # proposals in the replay bench (bench/README.md)
    seed: int = 0
    num_samples: int = 8
    max_concurrent: int = 1
    asha: AshaSettings | None = field(default_factory=AshaSettings)   # None: no early stopping
    max_failures: int = 0            # retries per trial for infrastructure failures
    checkpoint: bool | float = True  # true: a checkpoint per epoch (a retried or resumed trial
                                     # continues from it); a number N: at most every N seconds,
                                     # for epochs of seconds, where a checkpoint per epoch costs
                                     # more than a retry redoes (bench/bench_scale.py); false: none
    exact_resume: bool = True        # false: Tune snapshots the search about once an epoch, not
                                     # after every result (for hundreds of trials: the driver's
                                     # cost per result stays flat, bench/bench_scale.py); a trial
                                     # that ended just before a driver crash may then run again
                                     # on --resume
    drop_duplicates: bool = False    # drop Training faces pixel-identical to a PublicTest/
                                     # PrivateTest one, and PublicTest faces identical to a
                                     # PrivateTest one (see fer_models.audit)
    time_budget_minutes: float = 0.0  # >0: stop the search (running trials too) after this long
    plateau_trials: int = 0          # >0: stop the search after this many finished trials in a
    plateau_gain: float = 0.0        # row that beat the best by no more than plateau_gain
                                     # (search/plateau.py)

    @property
    def checkpoint_every_s(self) -> float:
        """0: a checkpoint every epoch (or none); else the seconds between checkpoints."""
        return 0.0 if isinstance(self.checkpoint, bool) else float(self.checkpoint)


@dataclass
class Resources:
    cpus_per_trial: Any = "auto"     # auto: all CPUs / max_concurrent (no GPU); with GPUs, CPUs per
                                     # trial slot on the GPUs, 1 to 4
    gpus_per_trial: Any = "auto"     # auto: 1 / trials_per_gpu when the cluster has GPUs, else 0
    trials_per_gpu: int = 4


@dataclass
class RetrainSettings:
    epochs: int = 0                  # 0: the winner's own epochs
    time_budget_minutes: float = 0.0  # >0: as many epochs as fit this long at the winner's
                                     # measured pace in its trial + 15%, at most ``epochs``
                                     # (search/retrain.py, planned_epochs)
    seeds: list = field(default_factory=lambda: [0])
    tta: bool = True                 # also report ten-crop+flip accuracy (beside the plain one)
    onnx: bool = True                # export model/ (and ensemble/) to ONNX after the retrain
    top_k: int = 1                   # >1: also retrain the next best distinct configs, ensemble them
    ensemble_seeds: bool = False     # the ensemble also averages the winner's other seeds (with
                                     # top_k 1 and 2 seeds: one config, its mean +- sd and ensemble)
    pareto: int = 0                  # several objectives: retrain up to this many points of
                                     # the Pareto front, each scored once (pareto.csv); 0: none
    params: dict = field(default_factory=dict)  # TrainConfig values the retrain sets over the
                                     # winner's: what a short trial cannot judge (regularisation
                                     # for a long schedule, keep_best, train_on_public)

    @property
    def train_on_public(self) -> bool:
        return bool(self.params.get("train_on_public", False))


def holds_default(config: dict, default: dict) -> bool:
    """Whether ``config`` holds every value of a (non-empty) ``default`` configuration, floats
    to 1e-9.

    >>> holds_default({"lr": 0.001 * (1 + 1e-12), "crop": 0, "epochs": 3}, {"lr": 0.001, "crop": 0})
    True
    >>> holds_default({"lr": 0.01, "crop": 0}, {"lr": 0.001, "crop": 0}), holds_default({}, {})
    (False, False)
    """
    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(a, (int, float)) and isinstance(b, (int, float)) \
                and math.isclose(a, b, rel_tol=1e-9)
        return a == b
    return bool(default) and all(same(config.get(k), v) for k, v in default.items())


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
        return TrainConfig().epochs if p is None else int(p.highest())

    def backbones(self) -> list[str]:
        p = self.params.get("backbone")
        return [TrainConfig().backbone] if p is None else p.values()

    def cap_epochs(self, cap: int) -> None:
        """No trial trains more than ``cap`` epochs (``--max-epochs``): every value of the
        ``epochs`` param is cut to ``cap``; a range or choice that collapses becomes fixed."""
        p = self.params.get("epochs")
        self.params["epochs"] = Fixed("epochs", value=min(cap, TrainConfig().epochs)) \
            if p is None else p.capped(cap)

    def default_config(self) -> dict[str, Any]:
        """The searched params' values a person would run without a search: each param's
        ``default:`` in the file, else :meth:`Param.derived_default`. Every search runs it as
        its first trial, so the winner is measured against it at the same fidelity."""
        config = {}
        for name, p in self.params.items():
            if p.searched:
                config[name] = p.default if p.default is not None else p.derived_default()
        backbone = config.get("backbone", self.backbones()[0])
        size = self.params.get("input_size")
        if size is not None and size.searched and config["input_size"] < min_input_size(backbone):
            config["input_size"] = size.at_least(min_input_size(backbone))
        return config

    def is_default(self, config: dict) -> bool:
        """Whether a trial's ``config`` is :meth:`default_config` (:func:`holds_default`)."""
        return holds_default(config, self.default_config())

    def fixed(self) -> dict[str, Any]:
        return {k: p.value for k, p in self.params.items() if not p.searched}

    def suggest(self, trial) -> dict[str, Any]:
        """Optuna define-by-run: suggests every distribution, returns the fixed values."""
        backbone = self.params.get("backbone")
        chosen = backbone.suggest(trial) if backbone is not None else TrainConfig().backbone
        for p in self.params.values():
            if p.searched and p.name != "backbone":  # input_size starts at this backbone's minimum
                p.suggest(trial, floor=min_input_size(chosen) if p.name == "input_size" else None)
        return self.fixed()


# --- loading and validation --------------------------------------------------------------------

_SECTIONS = {"name", "data", "objectives", "constraints", "search", "resources", "retrain",
             "params"}


def load_space(path: str | Path, *, upgrade_earlier: bool = False) -> SearchSpace:
    """Read and validate a space file; raises SpaceError naming the file and the key.
    ``upgrade_earlier``: a results folder's copy of its space, written by an earlier version,
    is read in today's keys (search.space_history) instead of refused."""
    path = Path(path)
    if not path.exists():
        raise SpaceError(f"{path}: no such search-space file")
    try:
        raw = load_yaml(path)  # UTF-8 only, a key given twice refused
    except InputFileError as e:
        raise SpaceError(str(e)) from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with a 'params' section, got "
                         f"{type(raw).__name__}")
    err = lambda key, msg: SpaceError(f"{path}: {key}: {msg}")  # noqa: E731
    if upgrade_earlier:
        raw = upgrade(raw)
    _reject_non_finite(raw, "", err)
    _reject_renamed(raw, err)
    reject_unknown(raw, _SECTIONS, "", err)
    if "data" in raw and raw["data"] is not None and not (isinstance(raw["data"], str)
                                                          and raw["data"].strip()):
        raise err("data", f"must be a file path (the FER2013 CSV), got {raw['data']!r}"[:200])
    if not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise err("params", "required: a mapping of TrainConfig fields to values or distributions")
    objectives = parse_objectives(raw.get("objectives"), err)
    metric = next(iter(objectives))
    constraints = parse_constraints(raw.get("constraints"), err)
    search = _section(raw, "search", SearchSettings, err)
    resources = _section(raw, "resources", Resources, err)
    retrain = _section(raw, "retrain", RetrainSettings, err)
    _check_settings(search, resources, retrain, err)
    params = {name: parse_param(name, spec, err) for name, spec in raw["params"].items()}
    space = SearchSpace(path=path, name=str(raw.get("name") or path.stem),
                        data=raw.get("data"), metric=metric, mode=RANKING[metric],
                        search=search, resources=resources, retrain=retrain, params=params,
                        objectives=objectives, constraints=constraints)
    _check_retrain_params(space, err)
    if retrain.pareto and not space.multi_objective:
        raise err("retrain.pareto", "needs several objectives (objectives: {val_accuracy: max, "
                  "latency_ms: min}): there is no front to retrain")
    if retrain.pareto < 0:
        raise err("retrain.pareto", f"must be >= 0 (0: no Pareto retrain), got {retrain.pareto}")
    if space.multi_objective and search.plateau_trials:
        raise err("search.plateau_trials", "needs one objective: with several, no single best "
                  "can stop improving")
    if space.multi_objective and search.sampler not in MULTI_OBJECTIVE_SAMPLERS:
        raise err("search.sampler", f"{search.sampler} optimises one objective; with several "
                  f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
    _check_weight_files(space, err)
    _check_backbones(space, err)
    return space


def check_settings(space: SearchSpace, source: str) -> None:
    """The search, resources and retrain rules again, after ``source`` (command-line
    overrides) changed values: an override passes only what the file could hold."""
    err = lambda key, msg: SpaceError(f"{source}: {key}: {msg}")  # noqa: E731
    _check_settings(space.search, space.resources, space.retrain, err)


MAX_INT = 2 ** 53  # the largest integer a float holds exactly


def _reject_non_finite(value, key: str, err) -> None:
    """NaN and infinities anywhere in the file (YAML's .nan, .inf): every comparison a rule
    makes with NaN is false, so a rule would let it through."""
    if isinstance(value, float) and not math.isfinite(value):
        raise err(key or "(top level)", f"{value} is not a finite number")
    if isinstance(value, int) and abs(value) > MAX_INT:  # no float holds it: every rule would
        raise err(key or "(top level)", f"an integer of {value.bit_length()} bits is too large "
                  "(over 2**53)")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_non_finite(v, f"{key}.{k}" if key else str(k), err)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_non_finite(v, f"{key}[{i}]", err)


def _holder(raw: dict, dotted: str) -> tuple[dict | None, str]:
    """The mapping that would hold ``dotted`` (``a.b.c``: raw["a"]["b"]) and its last part."""
    *path, key = dotted.split(".")
    holder = raw
    for part in path:
        holder = holder.get(part) if isinstance(holder, dict) else None
    return (holder if isinstance(holder, dict) else None), key


def _reject_renamed(raw: dict, err) -> None:
    """A key, or a key's value, of an earlier schema: one line with where that concept lives now."""
    for old, new in RENAMED.items():
        holder, key = _holder(raw, old)
        if holder is not None and key in holder:
            raise err(old, f"no longer a key; it is now {new} (spaces/README.md)")
    for name, (is_earlier, new) in RETYPED.items():
        holder, key = _holder(raw, name)
        if holder is not None and key in holder and is_earlier(holder[key]):
            raise err(name, f"{json.dumps(holder[key])} is an earlier "
                      f"schema's value; it is now {new} (spaces/README.md)")


def _section(raw: dict, name: str, cls, err):
    values = raw.get(name) or {}
    if not isinstance(values, dict):
        raise err(name, f"must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    reject_unknown(values, fields, f"{name}.", err)
    values = dict(values)
    special = {"asha": _asha, "checkpoint": _checkpoint} if cls is SearchSettings else {}
    parsed = {key: parse(values.pop(key), f"{name}.{key}", err)
              for key, parse in special.items() if key in values}
    defaults = cls()
    for key, value in values.items():
        expected = type(getattr(defaults, key))
        if expected is str and getattr(defaults, key) == "auto":  # 'auto' or a number
            if value != "auto" and not is_number(value):
                raise err(f"{name}.{key}", f"must be 'auto' or a number, got {value!r}")
            continue
        if not _matches(value, expected):
            raise err(f"{name}.{key}", f"must be {expected.__name__}, got {value!r}")
    return cls(**values, **parsed)


def _asha(value, key: str, err) -> AshaSettings | None:
    """``search.asha``: a mapping of ASHA's settings ({} for its defaults), or false."""
    if value is False:
        return None
    if value is True or value is None:
        return AshaSettings()
    if not isinstance(value, dict):
        raise err(key, f"must be a mapping such as {{grace_period: 1, reduction_factor: 3}}, or "
                       f"false (no early stopping); got {value!r}")
    return _section({"asha": value}, "asha", AshaSettings, lambda k, m: err(f"search.{k}", m))


def _checkpoint(value, key: str, err) -> bool | float:
    """``search.checkpoint``: true (every epoch), false (none) or a number of seconds > 0."""
    if isinstance(value, bool):
        return value
    if not is_number(value) or value <= 0:
        raise err(key, f"must be true (every epoch), false (none) or seconds > 0, got {value!r}")
    return float(value)


def _matches(value, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return is_number(value)
    return isinstance(value, expected)


def _check_settings(search: SearchSettings, res: Resources, retrain: RetrainSettings, err) -> None:
    if search.sampler not in SAMPLERS:
        raise err("search.sampler", f"unknown sampler {search.sampler!r}; one of {', '.join(SAMPLERS)}")
    for key in ("num_samples", "max_concurrent"):
        if getattr(search, key) < 1:
            raise err(f"search.{key}", f"must be >= 1, got {getattr(search, key)}")
    asha = search.asha
    if asha is not None and asha.grace_period != "auto" and not (
            _matches(asha.grace_period, int) and asha.grace_period >= 1):
        raise err("search.asha.grace_period", "must be 'auto' (a third of the trials' epochs) "
                  f"or an integer >= 1, got {asha.grace_period!r}")
    if asha is not None and asha.reduction_factor < 2:
        raise err("search.asha.reduction_factor", f"must be >= 2, got {asha.reduction_factor}")
    if asha is not None and asha.rung_metric and asha.rung_metric not in RUNG_METRICS:
        raise err("search.asha.rung_metric", f"must be one of {', '.join(RUNG_METRICS)} (or "
                  f"empty: the first objective), got {asha.rung_metric!r}")
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
    for key in ("cpus_per_trial", "gpus_per_trial"):
        v = getattr(res, key)
        if v != "auto" and v < 0:
            raise err(f"resources.{key}", f"must be >= 0, got {v}")
    if res.trials_per_gpu < 1:
        raise err("resources.trials_per_gpu", "must be >= 1")
    if retrain.epochs < 0:
        raise err("retrain.epochs", "must be >= 0 (0 = the winner's own epochs)")
    if retrain.time_budget_minutes < 0:
        raise err("retrain.time_budget_minutes", "must be >= 0 (0 = no budget)")
    if retrain.time_budget_minutes and not retrain.epochs:
        raise err("retrain.time_budget_minutes", "needs retrain.epochs: the most epochs the "
                  "budget may buy")
    if not _matches(retrain.top_k, int) or retrain.top_k < 1:
        raise err("retrain.top_k", f"must be an integer >= 1, got {retrain.top_k!r}")
    if not retrain.seeds or not all(_matches(s, int) for s in retrain.seeds):
        raise err("retrain.seeds", f"must be a non-empty list of integers, got {retrain.seeds!r}")
    for seed in retrain.seeds:  # each becomes a TrainConfig seed: the field's own rule
        check_value("retrain.seeds", "seed", seed, err)
    if len(set(retrain.seeds)) != len(retrain.seeds):  # the same run twice: a false spread
        raise err("retrain.seeds", f"a seed is given twice in {retrain.seeds!r}")
    if retrain.epochs:
        check_value("retrain.epochs", "epochs", retrain.epochs, err)
    own = {"epochs": "retrain.epochs", "seed": "retrain.seeds"}
    for name, value in retrain.params.items():
        key = f"retrain.params.{name}"
        if name in own:
            raise err(key, f"set by {own[name]}, not here")
        if name in _MODEL_FIELDS:  # the search chose (and measured) a model: the retrain trains it
            raise err(key, "changes the model the search chose; retrain.params sets how the "
                           "winner is trained (regularisation, keep_best), not what it is")
        if name not in field_types():
            reject_unknown({name: None}, set(field_types()) - set(own), "retrain.params.", err)
        if isinstance(value, (dict, list)):
            raise err(key, f"must be one fixed value (the retrain samples nothing), got {value!r}")
        check_value(key, name, value, err)


_MODEL_FIELDS = {"backbone", "input_size", "in_chans", "head_hidden", "pre_logits", "stem_pool",
                 "pretrained", "pretrained_file"}


def _check_retrain_params(space: "SearchSpace", err) -> None:
    """retrain.params against params: a searched key would discard the search's choice (and
    could make distinct winners identical ensemble members); keep_best needs PublicTest."""
    for name in space.retrain.params:
        p = space.params.get(name)
        if p is not None and p.searched:
            raise err(f"retrain.params.{name}", f"params.{name} is searched; the retrain would "
                      "discard the search's choice (fix it in params, or drop it here)")
    public = space.params.get("train_on_public")
    if public is not None and True in public.values():
        raise err("params.train_on_public", "a trial is judged on PublicTest, so it cannot train "
                  "on it; set retrain.params.train_on_public for the retrain")
    keep = space.params.get("keep_best")
    keep_best = space.retrain.params.get("keep_best", keep is not None and True in keep.values())
    if keep_best and space.retrain.train_on_public:
        key = "retrain.params.keep_best" if "keep_best" in space.retrain.params else "params.keep_best"
        raise err(key, "picks an epoch on PublicTest, which retrain.params.train_on_public trains on; "
                       "use one or the other")


def _check_weight_files(space: SearchSpace, err) -> None:
    """Every pretrained_file a trial could get reads as weights here (the driver sees what trials
    see): a weights file, or a finished model folder. ImageNet weights (``pretrained``) are
    checked against the cache by search.weights, before Ray starts."""
    p = space.params.get("pretrained_file")
    values = [v for v in ([] if p is None else p.values()) if v is not None]
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
        space.params["pretrained_file"] = p.mapped(absolute)
    pretrained = space.params.get("pretrained")
    try:  # could a trial get both? (the pair's rule: fer_models.validation)
        check_weights_source(pretrained is not None and True in pretrained.values(),
                             values[0] if values else None)
    except WeightsError as e:
        raise err("params.pretrained", str(e).removeprefix("pretrained_file: ")) from None


def _check_backbones(space: SearchSpace, err) -> None:
    size = space.params.get("input_size") or Fixed("input_size", value=TrainConfig().input_size)
    for b in space.backbones():
        smallest = min_input_size(b)
        if not size.searched and size.value < smallest:
            raise err("params.input_size", f"{size.value} px is below {b}'s minimum of {smallest} px")
        if size.searched and not size.is_range and min(size.values()) < smallest:
            raise err("params.input_size", f"choice {size.values()} includes sizes below {b}'s "
                      f"minimum of {smallest} px; use an int range (int: [low, high], step: N), "
                      "which starts at each backbone's minimum, or drop the small sizes")
        if size.is_range and size.highest() < smallest:
            raise err("params.input_size", f"range tops out at {size.highest()} px, below {b}'s "
                      f"minimum of {smallest} px")
    # Options only some backbones have, and weights files of another architecture: refused
    # here, not by a trial at run time.
    drop_path, stem_pool = space.params.get("drop_path"), space.params.get("stem_pool")
    weights = space.params.get("pretrained_file")
    options = [("drop_path", 0.1) if drop_path is not None and drop_path.highest() > 0 else None,
               ("stem_pool", False) if stem_pool is not None and False in stem_pool.values()
               else None]
    options += [("pretrained_file", v) for v in (weights.values() if weights else [])
                if v is not None and Path(v).is_file()]
    # The retrain's drop_path (its one model option: _MODEL_FIELDS) meets every backbone that
    # can win before the search, not after it.
    if space.retrain.params.get("drop_path"):
        options.append(("retrain.params.drop_path", space.retrain.params["drop_path"]))
    for b in space.backbones():
        for option, value in filter(None, options):
            key = option if option.startswith("retrain.") else f"params.{option}"
            try:
                check_model_option(b, option.rpartition(".")[2], value)
            except ModelConfigError as e:
                raise err(key, f"{b}: {e}") from None
