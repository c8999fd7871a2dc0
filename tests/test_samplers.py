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


def _study(name: str, seed: int, tmp_path) -> optuna.Study:
    """Six trials of SPACE proposed by sampler ``name`` (past the samplers' random start-up:
    tpe_quick models from the 5th), each told a made-up result."""
    path = tmp_path / "s.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directions = ["maximize", "minimize"] if name == "nsga2" else ["maximize"]
    study = optuna.create_study(sampler=create_sampler(name, seed=seed), directions=directions)
    for i in range(6):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, [0.1 * i, 1.0 - 0.1 * i] if len(directions) == 2 else 0.1 * i)
    return study


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_registered_sampler_builds_and_proposes(name, tmp_path):
    params = _study(name, 0, tmp_path).trials[-1].params
    assert set(params) == {"backbone", "lr", "dropout", "epochs"}
    assert 1e-4 <= params["lr"] <= 1e-2 and params["backbone"] in ("resnet10t", "resnet18")


def test_multi_objective_samplers_are_registered():
    assert set(MULTI_OBJECTIVE_SAMPLERS) <= set(SAMPLERS)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_seed_sets_the_sequence(name, tmp_path):
    """A space's ``search.seed`` reproduces a search and a new seed draws a new one: Optuna's
    QMCSampler ignores its seed unless it scrambles. (Trial 0 is left out: QMC draws it with
    its independent sampler.)"""
    def lrs(seed: int) -> list[float]:
        return [t.params["lr"] for t in _study(name, seed, tmp_path).trials[1:]]
    assert lrs(0) == lrs(0)
    assert lrs(0) != lrs(1)
