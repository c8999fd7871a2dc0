"""What the driver writes into the experiment folder from Ray's results: the trials table and
best.yaml (the folder's layout and readers: :mod:`search.experiment_folder`)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml

from fer_models.config import TrainConfig
from fer_models.weights import describe_weights

from .experiment_folder import (COMPLETED, CONFIG_PREFIX, FAILED, STOPPED_EARLY,
                                ExperimentFolder, plain)
from .objectives import is_feasible
from .trainable import FINISHED_KEY


def trials_table(results, space) -> pd.DataFrame:
    """One row per trial: id, status, error, epochs, best/last PublicTest metrics, node, config."""
    rows = []
    for r in results:
        trial_id = (r.metrics or {}).get("trial_id") or Path(r.path).name
        config = r.config or {}  # None for a trial the time budget cut before its first report
        history = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
        has_val = "val_accuracy" in history.columns and history["val_accuracy"].notna().any()
        if r.error is not None:
            status, error = FAILED, error_reason(r.error)
        elif (r.metrics or {}).get(FINISHED_KEY, False):
            status, error = COMPLETED, ""
        else:
            status, error = STOPPED_EARLY, ""
        best = history.loc[history["val_accuracy"].idxmax()] if has_val else None
        row = {
            "trial_id": trial_id,
            "status": status,
            "error": error,
            "epochs": int(history["training_iteration"].max()) if "training_iteration" in history else 0,
            "best_val_accuracy": float(best["val_accuracy"]) if best is not None else math.nan,
            "best_epoch": int(best["training_iteration"]) if best is not None else 0,
            "best_val_loss": float(history["val_loss"].min()) if has_val else math.nan,
            "last_val_accuracy": float(history["val_accuracy"].iloc[-1]) if has_val else math.nan,
            "seconds": float(history["time_total_s"].max()) if "time_total_s" in history else 0.0,
            "default": space.is_default(config),
            "node_ip": (r.metrics or {}).get("node_ip", ""),
            "node_id": (r.metrics or {}).get("node_id", ""),
            "weights": describe_weights(config.get("backbone", TrainConfig.backbone),
                                        bool(config.get("pretrained", False)),
                                        config.get("pretrained_file")) if config else "",
        }
        if space.measures:
            row.update(_measures(r.metrics or {}, space.constraints))
        row.update({f"{CONFIG_PREFIX}{k}": v for k, v in sorted(config.items())})
        rows.append(row)
        row["_order"] = ExperimentFolder.trial_counter(r.path) or 1 << 30
    table = pd.DataFrame(rows)
    if not table.empty:  # creation order: Tune numbers trial folders, its ids are hashes
        table = table.sort_values("_order", kind="stable")
    return table.drop(columns="_order", errors="ignore").reset_index(drop=True)


MEASURE_COLUMNS = ("params_m", "macs_m", "latency_ms")


def _measures(metrics: dict, constraints: dict) -> dict:
    """params_m, macs_m, latency_ms (where it was measured) and whether the trial meets the
    space's constraints; NaN / False for a trial that failed before measuring."""
    row = {k: float(metrics[k]) if k in metrics else math.nan for k in MEASURE_COLUMNS}
    row["latency_threads"] = metrics.get("latency_threads", math.nan)
    row["latency_machine"] = metrics.get("latency_machine", "")
    measured = all(k in metrics for k in constraints)
    row["feasible"] = bool(measured and is_feasible(constraints, metrics))
    return row


def error_reason(error: BaseException) -> str:
    """The root cause of a trial error in one line (Ray wraps it in a long traceback)."""
    text = str(error).strip().splitlines()
    causes = [line.strip() for line in text if "Error:" in line or "Exception:" in line]
    return (causes[-1] if causes else (text[-1] if text else type(error).__name__))[:300]


def write_best_yaml(path: Path, space, config: dict, retrain_epochs: int = 0) -> None:
    """The winning config as a space file with every param fixed: re-runnable as it is.
    ``retrain_epochs``: the epochs the retrain runs (a time budget's choice), fixed here too."""
    doc = {
        "name": f"{space.name}-best",
        "objectives": space.metric,
        "search": {"sampler": space.search.sampler, "seed": space.search.seed, "num_samples": 1,
                   "max_concurrent": 1, "asha": False,
                   "drop_duplicates": space.search.drop_duplicates},
        "retrain": {"epochs": retrain_epochs or space.retrain.epochs, "seeds": list(space.retrain.seeds),
                    "tta": space.retrain.tta,
                    "top_k": 1,  # one config: nothing to ensemble
                    **({"params": dict(space.retrain.params)} if space.retrain.params else {})},
        "params": {k: plain(v) for k, v in sorted(config.items())},
    }
    if space.measures:  # the rerun measures the model and checks it as the search did
        doc = {"name": doc["name"], "objectives": dict(space.objectives),
               "constraints": {k: dict(v) for k, v in space.constraints.items()},
               **{k: doc[k] for k in ("search", "retrain", "params")}}
    path.write_text(f"# Best configuration of {space.path} (re-run: python -m search.run {path})\n"
                    + yaml.safe_dump(doc, sort_keys=False))
