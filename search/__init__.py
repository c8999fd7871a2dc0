"""search: the driver. YAML spaces -> Ray Tune (Optuna sampler, ASHA) -> retrain -> PrivateTest.

Example (from the repository root; a whole search: ``python -m search.run spaces/smoke.yaml
--data data/fer2013.csv``):
    >>> from search import load_space
    >>> space = load_space("spaces/smoke.yaml")
    >>> space.search.sampler, space.backbones()
    ('tpe', ['resnet10t'])
"""
from .space import SearchSpace, SpaceError, load_space

__all__ = ["SearchSpace", "SpaceError", "load_space"]
