"""Command-line values that replace a space's own (``--num-samples``, ``--max-epochs``, ...):
which key each sets, and how. ``search.run`` applies them and records them in run.json, so
a resume and a rewritten report see the space as the search ran it."""
from __future__ import annotations

from .space import check_settings

__all__ = ["OVERRIDES", "RETRAIN_OVERRIDES", "apply_overrides"]

# Each command-line override (argparse's name) and the space key it sets; None: --max-epochs,
# which caps every value of params.epochs (SearchSpace.cap_epochs).
OVERRIDES = {"num_samples": "search.num_samples", "seed": "search.seed", "max_epochs": None,
             "retrain_epochs": "retrain.epochs", "top_k": "retrain.top_k",
             "drop_duplicates": "search.drop_duplicates"}
RETRAIN_OVERRIDES = tuple(k for k, target in OVERRIDES.items() if (target or "").startswith("retrain."))


def apply_overrides(space, overrides: dict) -> None:
    """Command-line values that replace the space's own (recorded in run.json for --resume),
    then the rules the same values obey in a space file."""
    for flag, value in overrides.items():
        if flag not in OVERRIDES or value is None or value is False:
            continue
        target = OVERRIDES[flag]
        if target is None:  # --max-epochs caps every value of params.epochs
            space.cap_epochs(value)
        else:
            section, key = target.split(".")
            setattr(getattr(space, section), key, value)
    given = [f"--{k.replace('_', '-')}" for k in OVERRIDES if overrides.get(k) not in (None, False)]
    if given:
        check_settings(space, " ".join(given))
