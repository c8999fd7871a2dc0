"""Keys of earlier versions of the space schema: where each concept lives now, and the upgrade of
a space file that a results folder kept from an earlier version.

A space file a person gives (``python -m search.run SPACE.yaml``) that uses an earlier key is
refused with one line naming its new home (:data:`RENAMED`). A results folder's own copy
(``space.yaml``, read by ``--resume``, ``--warm-start`` and the report) was valid when it was
written, so :func:`upgrade` rewrites it to today's keys instead: earlier searches stay usable.

Example:
    >>> upgrade({"metric": "val_loss", "search": {"scheduler": "asha", "grace_period": 2},
    ...          "params": {"cpu_bf16": True}})
    {'search': {'asha': {'grace_period': 2}}, 'params': {'precision': 'bf16'}, 'objectives': 'val_loss'}
"""
from __future__ import annotations

import copy

from fer_models.config import RENAMED_FIELDS, upgrade_fields

__all__ = ["RENAMED", "RENAMED_FIELDS", "RETYPED", "upgrade"]

RENAMED = {
    "metric": "objectives (e.g. objectives: val_loss)",
    "search.scheduler": "search.asha (asha: false for no early stopping)",
    "search.grace_period": "search.asha.grace_period",
    "search.reduction_factor": "search.asha.reduction_factor",
    "search.rung_metric": "search.asha.rung_metric",
    "search.checkpoint_every_s": "search.checkpoint (a number: at most every that many seconds)",
    "retrain.train_on_public": "retrain.params.train_on_public",
    "retrain.pareto_max": "retrain.pareto (the number of front points to retrain; 0: none)",
    **{f"params.{old}": f"params.{new}" for old, new in RENAMED_FIELDS.items()},
    **{f"retrain.params.{old}": f"retrain.params.{new}" for old, new in RENAMED_FIELDS.items()},
}
# Keys that an earlier schema gave values of another type: (is the value an earlier one?, the key now).
RETYPED = {
    "retrain.pareto": (lambda value: isinstance(value, bool), RENAMED["retrain.pareto_max"]),
}
_ASHA_KEYS = ("grace_period", "reduction_factor", "rung_metric")


def upgrade(raw: dict) -> dict:
    """An earlier version's space document in today's keys (a copy; ``raw`` is not changed)."""
    if not isinstance(raw, dict):
        return raw
    doc = copy.deepcopy(raw)
    if "metric" in doc:
        metric = doc.pop("metric")
        doc.setdefault("objectives", metric)
    search = doc.get("search")
    if isinstance(search, dict):
        scheduler = search.pop("scheduler", None)
        asha = {k: search.pop(k) for k in _ASHA_KEYS if k in search}
        if scheduler == "none":
            search["asha"] = False
        elif scheduler is not None or asha:
            search["asha"] = asha
        every_s = search.pop("checkpoint_every_s", 0)
        if every_s and search.get("checkpoint", True) is not False:
            search["checkpoint"] = every_s
    retrain = doc.get("retrain")
    if isinstance(retrain, dict):
        if "train_on_public" in retrain:
            on_public = retrain.pop("train_on_public")
            if on_public:
                retrain["params"] = {**(retrain.get("params") or {}), "train_on_public": True}
        earlier_pareto, _ = RETYPED["retrain.pareto"]
        if earlier_pareto(retrain.get("pareto")) or "pareto_max" in retrain:
            limit = retrain.pop("pareto_max", 5)
            retrain["pareto"] = limit if retrain.get("pareto") is True else 0
        if isinstance(retrain.get("params"), dict):
            retrain["params"] = upgrade_fields(retrain["params"])
    if isinstance(doc.get("params"), dict) and any(k in doc["params"] for k in RENAMED_FIELDS):
        params = doc["params"]
        fixed = {k: params.pop(k) for k in RENAMED_FIELDS if k in params}
        if all(not isinstance(v, dict) for v in fixed.values()):
            params.update(upgrade_fields(fixed))
    return doc
