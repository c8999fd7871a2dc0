"""Every sampler in the registry is built and proposes, on a space with every distribution kind:
a sampler whose optional dependency is missing (QMC and GP import scipy) fails here, not in a
user's search."""
from __future__ import annotations

import optuna
import pytest

from search.samplers import MULTI_OBJECTIVE_SAMPLERS, SAMPLERS, create_sampler
from search.space import load_space

SPACE = """
params:
  backbone: {choice: [resnet10t, resnet18]}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
  dropout: {uniform: [0.0, 0.5], step: 0.1}
  epochs: {int: [1, 3]}
"""


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_registered_sampler_builds_and_proposes(name, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directions = ["maximize", "minimize"] if name == "nsga2" else ["maximize"]
    study = optuna.create_study(sampler=create_sampler(name, seed=0), directions=directions)
    for i in range(6):  # past the samplers' random start-up (tpe_quick models from the 5th)
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, [0.1 * i, 1.0 - 0.1 * i] if len(directions) == 2 else 0.1 * i)
    params = study.trials[-1].params
    assert set(params) == {"backbone", "lr", "dropout", "epochs"}
    assert 1e-4 <= params["lr"] <= 1e-2 and params["backbone"] in ("resnet10t", "resnet18")


def test_multi_objective_samplers_are_registered():
    assert set(MULTI_OBJECTIVE_SAMPLERS) <= set(SAMPLERS)


def _proposals(name: str, seed: int, space) -> list[float]:
    directions = ["maximize", "minimize"] if name == "nsga2" else ["maximize"]
    study = optuna.create_study(sampler=create_sampler(name, seed=seed), directions=directions)
    lrs = []
    for i in range(6):
        trial = study.ask()
        space.suggest(trial)
        lrs.append(trial.params["lr"])
        study.tell(trial, [0.1 * i, 1.0 - 0.1 * i] if len(directions) == 2 else 0.1 * i)
    return lrs


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_seed_sets_the_sequence(name, tmp_path):
    """A space's ``search.seed`` reproduces a search and a new seed draws a new one: Optuna's
    QMCSampler ignores its seed unless it scrambles."""
    path = tmp_path / "s.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    assert _proposals(name, 0, space) == _proposals(name, 0, space)
    assert _proposals(name, 0, space)[1:] != _proposals(name, 1, space)[1:]
