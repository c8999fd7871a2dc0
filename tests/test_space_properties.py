"""Property-based tests of the space schema: any YAML either loads into a space whose proposals
respect every declared bound, or is refused with a SpaceError naming the file and a key."""
from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.space import SpaceError, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
_counter = itertools.count()

numbers = st.one_of(st.integers(-5, 300), st.floats(-1, 2, allow_nan=False, allow_infinity=False))
junk = st.one_of(st.none(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=3))
float_keys = st.sampled_from(["lr", "dropout", "weight_decay", "label_smoothing", "rotate", "tyop"])
int_keys = st.sampled_from(["epochs", "batch_size", "input_size", "head_hidden"])


def distribution(kind_values):
    return st.one_of(
        st.builds(lambda lo, hi: {"uniform": [lo, hi]}, numbers, numbers),
        st.builds(lambda lo, hi: {"loguniform": [lo, hi]}, numbers, numbers),
        st.builds(lambda lo, hi, step: {"int": [lo, hi], "step": step}, st.integers(-3, 200),
                  st.integers(-3, 200), st.integers(1, 40)),
        st.builds(lambda vs: {"choice": vs}, st.lists(kind_values, max_size=4)),
        kind_values, junk)


spaces = st.fixed_dictionaries(
    {"params": st.dictionaries(st.one_of(float_keys, int_keys), distribution(numbers), max_size=4)},
    optional={"search": st.fixed_dictionaries({}, optional={
        "num_samples": st.one_of(st.integers(-1, 5), junk),
        "sampler": st.sampled_from(["tpe", "random", "cmaes", "gp", "qmc", "bayes"]),
        "asha": st.sampled_from([False, {}, {"grace_period": 2}, "pbt", {"grace_period": 0}])})})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=spaces)
def test_any_space_loads_and_respects_bounds_or_is_refused_by_key(tmp_path_factory, doc):
    path = tmp_path_factory.getbasetemp() / f"prop-{next(_counter)}.yaml"
    doc = {**doc, "params": {"backbone": "resnet10t", **doc["params"]}}
    path.write_text(yaml.safe_dump(doc))
    try:
        space = load_space(path)
    except SpaceError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and "\n" not in msg
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        fixed = space.suggest(trial)
        study.tell(trial, 0.0)
        values = {**fixed, **trial.params}
        for name, p in space.params.items():
            v = values[name]
            if p.kind == "choice":
                assert v in p.value
            elif p.kind in ("uniform", "loguniform", "int"):
                assert p.low - 1e-9 <= v <= p.high + 1e-9, (name, v, p)
            else:
                assert v == p.value
        from fer_models.config import TrainConfig

        TrainConfig.from_dict(values)  # every proposal is a buildable training config
