"""search: the driver. YAML spaces -> Ray Tune (Optuna sampler, ASHA) -> retrain -> PrivateTest.

Example:
    >>> from search import load_space
    >>> space = load_space("spaces/smoke.yaml")  # doctest: +SKIP
    >>> from search.run import main
    >>> main(["spaces/smoke.yaml", "--data", "../shared/data/fer2013-small.csv.gz"])  # doctest: +SKIP
"""
from .space import SearchSpace, SpaceError, load_space

__all__ = ["SearchSpace", "SpaceError", "load_space"]
