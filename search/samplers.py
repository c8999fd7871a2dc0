"""The Optuna samplers a space may name (``search.sampler``): one registry that the space's
validation and the searcher's construction both read.

Optuna is imported only when a sampler is built, so validating a space stays cheap.

Example:
    >>> sorted(SAMPLERS)
    ['cmaes', 'gp', 'nsga2', 'qmc', 'random', 'tpe', 'tpe_quick']
    >>> type(create_sampler("tpe", seed=0)).__name__
    'TPESampler'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["SamplerInfo", "SAMPLERS", "MULTI_OBJECTIVE_SAMPLERS", "create_sampler"]


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    description: str
    build: Callable[[int], object]   # seed -> optuna.samplers.BaseSampler


def _tpe(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _tpe_quick(seed: int):
    import optuna

    # Optuna's TPE samples at random for its first 10 trials: a search of 8-16 trials would be a
    # random search. Modelling after 4, jointly over the params (multivariate), lets such a
    # budget learn something.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True)


def _random(seed: int):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int):
    import optuna

    # CMA-ES samples only numeric params; categorical ones fall back to independent random.
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _gp(seed: int):
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


def _nsga2(seed: int):
    from .private_api import PicklableNSGAIISampler

    # A genetic algorithm for several objectives; a small population so that a search of a few
    # dozen trials gets past its first generation.
    return PicklableNSGAIISampler(seed=seed, population_size=8)


def _qmc(seed: int):
    import optuna

    # Scrambled, or the seed is ignored and every search draws the same sequence.
    return optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, SamplerInfo] = {info.name: info for info in (
    SamplerInfo("tpe", "Tree-structured Parzen Estimator (random for its first 10 trials)", _tpe),
    SamplerInfo("tpe_quick", "TPE modelling after 4 trials, multivariate: for 8-20 trials",
                _tpe_quick),
    SamplerInfo("random", "independent uniform sampling", _random),
    SamplerInfo("cmaes", "CMA-ES over the numeric params (categorical ones: random)", _cmaes),
    SamplerInfo("gp", "Gaussian-process Bayesian optimisation", _gp),
    SamplerInfo("nsga2", "NSGA-II, for several objectives (population 8)", _nsga2),
    SamplerInfo("qmc", "quasi-Monte Carlo (Sobol): even coverage, no learning", _qmc),
)}


# Samplers that model several objectives (Optuna 5); cmaes optimises one.
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "tpe_quick", "nsga2", "random", "qmc", "gp")


def create_sampler(name: str, seed: int):
    """The Optuna sampler ``name``, seeded."""
    try:
        info = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; one of {', '.join(SAMPLERS)}") from None
    return info.build(seed)
