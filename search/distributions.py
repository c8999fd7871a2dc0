"""What a space's param can be: a fixed value, or a distribution the search samples.

One class per kind, holding everything about it: how a space file writes it (:meth:`Param.parse`),
which values it can propose (:meth:`Param.contains`, checked against the TrainConfig field's own
rule), how Optuna samples it, its default, how it narrows under ``--max-epochs``, what
TensorBoard's HParams tab shows of it, and where a value lies in it (the replay bench's distance).
To add a kind, subclass :class:`Param` here and list it in :data:`KINDS`; nothing else switches
on kind names.

Example:
    >>> from search.distributions import parse_param
    >>> def fail(key, msg): return ValueError(f"{key}: {msg}")
    >>> lr = parse_param("lr", {"loguniform": [1.0e-4, 1.0e-2], "default": 1.0e-3}, fail)
    >>> lr.kind, lr.searched, lr.contains(3e-3), lr.contains(0.5), lr.default
    ('loguniform', True, True, False, 0.001)
    >>> parse_param("crop", {"choice": [0, 40, 44]}, fail).derived_default()  # TrainConfig's 0
    0
    >>> parse_param("dropout", {"uniform": [0.0, 0.9], "step": 0.3}, fail).values()
    [0.0, 0.3, 0.6, 0.9]
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from fer_models.config import TrainConfig
from fer_models.validation import ConfigError, check_field

__all__ = ["KINDS", "Choice", "Fixed", "IntRange", "LogUniform", "Param", "Range", "Uniform",
           "check_value", "field_types", "is_number", "parse_param", "reject_unknown"]

Err = Callable[[str, str], Exception]   # (key, message) -> the exception to raise
CHECK_EVERY_POINT = 10_000   # a stepped range this small has each value checked, not its ends
MAX_STEPS = 1e12             # finer steps than this are a continuous range written badly


@dataclass
class Param:
    name: str
    default: Any = None   # the value a person would run without a search; None: derived

    kind: ClassVar[str] = ""
    searched: ClassVar[bool] = True    # False: the same value in every trial
    is_range: ClassVar[bool] = False   # numbers between two ends (not a list of values)

    # -- what it can propose
    def contains(self, value) -> bool:
        raise NotImplementedError

    def values(self) -> list | None:
        """Every value it can propose, when there are finitely many; else None."""
        return None

    def highest(self):
        return max(self.values())

    def capped(self, cap) -> Param:
        """This param with no value above ``cap`` (a range or list that collapses is fixed)."""
        values = sorted({min(v, cap) for v in self.values()})
        if len(values) == 1:
            return Fixed(self.name, value=values[0])
        default = None if self.default is None else min(self.default, cap)
        return dataclasses.replace(self, value=values, default=default)

    def derived_default(self):
        """TrainConfig's own default where it can be proposed; else the kind's middle."""
        own = getattr(TrainConfig(), self.name)
        return own if self.contains(own) else self.middle()

    def middle(self):
        return self.values()[0]

    def at_least(self, floor):
        """The smallest value it can propose that is >= ``floor`` (None: there is none)."""
        above = [v for v in self.values() if v >= floor]
        return min(above) if above else None

    def mapped(self, fn: Callable) -> Param:
        """This param with ``fn`` applied to each value (ranges are left as they are)."""
        return self

    # -- sampling, reading back, showing
    def suggest(self, trial, floor=None):
        """Optuna define-by-run; ``floor``: the lowest value allowed this trial (input_size
        per backbone), for kinds that can start higher."""
        raise NotImplementedError

    def from_table(self, value):
        """A value read back from a CSV in the type this param proposes (pandas reads an int
        column with a gap as floats: 40.0 is the choice 40)."""
        return value

    def known_points(self) -> list:
        """Values TensorBoard's HParams domain gets before any trial ran."""
        return []

    def unit(self, value) -> float:
        """Where ``value`` lies: for a list of values its index (-1: not one of them); for a
        range its place in [0, 1], on a log scale for log ranges (the replay bench's distance)."""
        values = self.values()
        return float(values.index(value)) if value in values else -1.0

    # -- parsing
    @classmethod
    def parse(cls, name: str, spec, key: str, err: Err) -> Param:
        raise NotImplementedError


@dataclass
class Fixed(Param):
    value: Any = None
    kind: ClassVar[str] = "fixed"
    searched: ClassVar[bool] = False

    def contains(self, value) -> bool:
        return value == self.value

    def values(self) -> list:
        return [self.value]

    def capped(self, cap) -> Param:
        return Fixed(self.name, value=min(cap, self.value))

    def mapped(self, fn):
        return Fixed(self.name, value=fn(self.value))

    def suggest(self, trial, floor=None):
        return self.value

    @classmethod
    def parse(cls, name, spec, key, err):
        check_value(key, name, spec, err)
        return cls(name, value=spec)


@dataclass
class Choice(Param):
    value: list = field(default_factory=list)   # the choices, in the file's order
    kind: ClassVar[str] = "choice"

    def contains(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.value)

    def values(self) -> list:
        return list(self.value)

    def suggest(self, trial, floor=None):
        return trial.suggest_categorical(self.name, self.value)

    def mapped(self, fn):
        default = None if self.default is None else fn(self.default)
        return Choice(self.name, value=[fn(v) for v in self.value], default=default)

    def from_table(self, value):
        for choice in self.value:
            if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                return choice
        return value

    def known_points(self) -> list:
        return list(self.value)

    @classmethod
    def parse(cls, name, spec, key, err):
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            raise err(f"{key}.choice", "must be a non-empty list")
        for v in choices:
            check_value(f"{key}.choice", name, v, err)
        if len(set(map(repr, choices))) != len(choices):
            raise err(f"{key}.choice", f"has duplicate values: {choices}")
        reject_unknown(spec, {"choice", "default", "step", "log"}, f"{key}.", err)
        if "step" in spec or "log" in spec:
            raise err(key, "step/log apply to ranges, not choice")
        return cls(name, value=list(choices))


@dataclass
class Range(Param):
    """Numbers in [low, high], on ``step`` when given (a q-step)."""
    low: float | int = 0
    high: float | int = 1
    step: float | int | None = None
    log: bool = False
    is_range: ClassVar[bool] = True

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def values(self) -> list | None:
        """Every point of a stepped range of at most CHECK_EVERY_POINT points; else None."""
        count = self.count()
        if count is None or count > CHECK_EVERY_POINT:
            return None
        return [self.cast(self.low + i * (self.step or 1)) for i in range(count)]

    def highest(self):
        count = self.count()
        return self.high if count is None else self.cast(self.low + (count - 1) * (self.step or 1))

    def capped(self, cap) -> Param:
        if self.low >= cap:
            return Fixed(self.name, value=self.cast(cap))
        capped = dataclasses.replace(self, high=min(self.high, cap))
        if capped.default is not None and not capped.contains(capped.default):
            capped.default = None
        return capped

    def count(self) -> int | None:
        if not self.step:
            return None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def middle(self):
        middle = math.sqrt(self.low * self.high) if self.log_scale else (self.low + self.high) / 2
        if self.step:
            middle = self.low + round((middle - self.low) / self.step) * self.step
            middle = min(max(middle, self.low), self.high)
        return self.cast(middle)

    def known_points(self) -> list:
        return [float(self.low), float(self.high)]

    def at_least(self, floor):
        if floor <= self.low:
            return self.low
        if not self.step:
            return self.cast(floor) if floor <= self.high else None
        value = self.cast(self.low + math.ceil((floor - self.low) / self.step - 1e-9) * self.step)
        return value if value <= self.high else None

    def unit(self, value) -> float:
        if self.log_scale:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    @property
    def log_scale(self) -> bool:
        return self.log

    def cast(self, value):
        return float(f"{value:.12g}")  # low + i * step without float noise (0.30000000000000004)

    @classmethod
    def parse(cls, name, spec, key, err):
        kind, ftype = cls.kind, field_types()[name]
        reject_unknown(spec, {kind, "default", "step", "log"}, f"{key}.", err)
        bounds = spec[kind]
        if ftype not in ("int", "float"):
            raise err(key, f"{name} is {ftype}: use a fixed value or choice, not {kind}")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds)):
            raise err(f"{key}.{kind}", f"must be [low, high] numbers, got {bounds!r}")
        low, high = bounds
        if not low < high:
            raise err(f"{key}.{kind}", f"empty or inverted range: low {low} must be < high {high}")
        if ftype == "int" and kind != "int":
            raise err(key, f"{name} is an integer: use int: [low, high]")
        step = spec.get("step")
        if step is not None and (not is_number(step) or step <= 0 or step > high - low):
            raise err(f"{key}.step", f"must be a number in (0, high - low], got {step!r}")
        if step is not None and not (high - low) / step <= MAX_STEPS:  # inf too
            raise err(f"{key}.step", f"{step!r} is too fine: more than {MAX_STEPS:.0e} points "
                      "between low and high; leave step out for a continuous range")
        log = spec.get("log", False)
        if not isinstance(log, bool) or (log and kind != "int"):
            raise err(f"{key}.log", "log: true is for int ranges (use loguniform for floats)")
        if log and step not in (None, 1):
            raise err(f"{key}.log", "log: true cannot be combined with a step")
        param = cls(name, low=low, high=high, step=step, log=log)
        param.check_options(key, err)
        # Every value it can propose must be one the field accepts: each point of a small
        # stepped range (a rule need not be an interval), else both ends and the last step.
        values = param.values()
        points = values if values is not None else [low, high, param.highest()]
        for v in points:
            check_value(f"{key}.{kind}", name, float(v) if ftype == "float" else v, err)
        return param

    def check_options(self, key: str, err: Err) -> None:
        pass


@dataclass
class Uniform(Range):
    kind: ClassVar[str] = "uniform"

    def suggest(self, trial, floor=None):
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step)


@dataclass
class LogUniform(Range):
    kind: ClassVar[str] = "loguniform"

    @property
    def log_scale(self) -> bool:
        return True

    def suggest(self, trial, floor=None):
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=True)

    def check_options(self, key, err):
        if self.low <= 0:
            raise err(f"{key}.loguniform", f"low must be > 0, got {self.low}")
        if self.step is not None:
            raise err(f"{key}.step", "a q-step cannot be combined with loguniform")


@dataclass
class IntRange(Range):
    kind: ClassVar[str] = "int"

    def contains(self, value) -> bool:
        return super().contains(value) and float(value).is_integer()

    def count(self) -> int:
        return (int(self.high) - int(self.low)) // int(self.step or 1) + 1

    def suggest(self, trial, floor=None):
        low = self.low if floor is None else (self.at_least(floor) or self.low)
        return trial.suggest_int(self.name, int(low), int(self.high), step=int(self.step or 1),
                                 log=self.log)

    def from_table(self, value):
        return int(value) if isinstance(value, float) and value.is_integer() else value

    def cast(self, value):
        return int(round(value))

    def check_options(self, key, err):
        if not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise err(f"{key}.int", f"bounds must be integers, got {[self.low, self.high]}")
        if self.step is not None and not isinstance(self.step, int):
            raise err(f"{key}.step", f"must be an integer for int ranges, got {self.step!r}")
        if self.log and self.low <= 0:
            raise err(f"{key}.int", f"a log range must start above 0, got {self.low}")


KINDS: dict[str, type[Param]] = {cls.kind: cls for cls in (Choice, Uniform, LogUniform, IntRange)}


def parse_param(name: str, spec, err: Err, key: str | None = None) -> Param:
    """A space file's ``params.<name>``: a fixed value, or a mapping with exactly one kind key
    (and that kind's options, and ``default:``)."""
    key = key or f"params.{name}"
    types = field_types()
    if name not in types:
        reject_unknown({name: None}, set(types), "params.", err)
    if not isinstance(spec, dict):
        return Fixed.parse(name, spec, key, err)
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        raise err(key, f"a distribution needs exactly one of {', '.join(KINDS)}; got keys "
                       f"{', '.join(map(str, spec)) or 'none'}")
    param = KINDS[kinds[0]].parse(name, spec, key, err)
    if "default" in spec:
        default = spec["default"]
        if types[name] == "float" and is_number(default):
            default = float(default)
        check_value(f"{key}.default", name, default, err)
        if not param.contains(default):
            raise err(f"{key}.default", f"{default!r} is not a value this {param.kind} can propose")
        param.default = default
    return param


_NOT_TUNABLE = {"extra", "device"}


def field_types() -> dict[str, str]:
    """The TrainConfig fields a space may set, with their type names."""
    return {f.name: f.type for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_TUNABLE}


def check_value(key: str, name: str, value, err: Err) -> None:
    """The field's own rule (fer_models.validation), reported at ``key`` of the file."""
    try:
        check_field(name, value)
    except ConfigError as e:
        raise err(key, str(e).removeprefix(f"{name}: ")) from None


def reject_unknown(mapping: dict, known, prefix: str, err: Err) -> None:
    """A key of ``mapping`` not in ``known``: refused at ``prefix + key``, with the closest
    known name as a hint."""
    for name in mapping:
        if name not in known:
            close = difflib.get_close_matches(str(name), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (known: {', '.join(sorted(map(str, known)))})"
            raise err(f"{prefix}{name}", f"unknown key{hint}")


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
