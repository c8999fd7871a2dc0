"""The end-of-run report and TensorBoard logs of an experiment folder.

``search/experiment.py`` calls both at the end of a run; to redo them for a finished experiment:
``python -m search.report results/<name>``.

* :func:`log_retrain_tensorboard` writes ``retrain/`` (the winner's retrain, under the same tags as
  Ray's trials so the curves overlay; PrivateTest confusion matrix as an image; an hparams session)
  and the HParams additions of :mod:`search.tensorboard_logs`.
* :func:`write_report` writes ``report.md`` and its PNGs beside it.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display).
"""
from __future__ import annotations

import json
import math
import shlex
import statistics
from pathlib import Path

import pandas as pd

from fer_models.profile import PROFILE_METRICS

from . import tensorboard_logs as tbl
from .experiment_folder import (COMPLETED, FAILED, STOPPED_EARLY, ExperimentFolder,
                                config_columns, is_missing)
from .default_baseline import describe_comparison
from .objectives import feasible_mask, pareto_front

__all__ = ["log_retrain_tensorboard", "write_report"]

FIGURES = {
    "curves": "report_learning_curves.png",
    "order": "report_trials_by_order.png",
    "importance": "report_param_importance.png",
    "confusion": "report_confusion_matrix.png",
    "per_class": "report_per_class_accuracy.png",
    "pareto": "report_pareto.png",
}
MIN_IMPORTANCE_TRIALS = 3   # fewer: no importance is estimated, the report says why
DPI = 110
STYLE = {  # status -> line/marker style, shared by the figures
    COMPLETED: dict(color="#1f77b4", ls="-", marker="o", label=COMPLETED),
    STOPPED_EARLY: dict(color="#ff7f0e", ls="--", marker="v", label="stopped early by ASHA"),
    FAILED: dict(color="#d62728", ls=":", marker="X", label=FAILED),
}
WINNER_COLOR = "#2ca02c"


def log_retrain_tensorboard(experiment: Path) -> Path:
    """TensorBoard events for the retrain in ``experiment/retrain/``, plus the HParams additions
    (an experiment-level summary and the sessions Ray did not write). Returns the retrain run."""
    metrics = ExperimentFolder(experiment).read_metrics()
    figures = {}
    if metrics.get("confusion_matrix"):
        figures["private_test/confusion_matrix"] = _confusion_figure(metrics, "PrivateTest")
        if metrics.get("tta", {}).get("confusion_matrix"):
            figures["private_test/confusion_matrix_tta"] = _confusion_figure(
                metrics["tta"], "PrivateTest, ten-crop TTA")
    run = tbl.write_retrain_run(experiment, figures)
    tbl.write_hparams_overview(experiment)
    return run


def write_report(experiment: Path) -> Path:
    """``experiment/report.md`` with its figures (PNG, beside it). Returns the report's path."""
    folder = ExperimentFolder(experiment)
    summary, metrics = folder.read_summary(), folder.read_metrics()
    table = _with_order(folder, folder.read_trials())
    winner_id = str(summary.get("best_trial") or _best_trial_id(table))
    curves = _learning_curves(folder, table)

    figures, problems = {}, {}

    def draw(key, fn, *args):
        try:
            fig = fn(*args)
            if fig is None:
                return
            path = folder / FIGURES[key]
            fig.savefig(path, dpi=DPI)
            figures[key] = path.name
        except Exception as e:  # one figure must not cost the whole report
            problems[key] = f"{type(e).__name__}: {e}"

    draw("curves", _curves_figure, table, curves, winner_id, _asha_rungs(folder, table))
    draw("order", _order_figure, table, winner_id)
    importance = _importance(folder)
    if importance.get("values"):
        draw("importance", _importance_figure, importance)
    objectives = summary.get("objectives") or {}
    front = None
    if "latency_ms" in table and objectives:
        front = pareto_front(table, objectives) if len(objectives) > 1 else None
        draw("pareto", _pareto_figure, table, objectives, summary.get("constraints") or {},
             front, winner_id)
    if metrics.get("confusion_matrix"):
        draw("confusion", _confusion_figure, metrics, "PrivateTest")
    if metrics.get("per_class_accuracy"):
        draw("per_class", _per_class_figure, metrics)

    text = _markdown(folder, summary, metrics, table, winner_id, importance, figures, problems,
                     front)
    folder.report_md.write_text(text)
    return folder.report_md


# --- data ---------------------------------------------------------------------------------------

def _best_trial_id(table: pd.DataFrame) -> str:
    ok = table[table["status"] != FAILED].dropna(subset=["best_val_accuracy"])
    return str(ok.loc[ok["best_val_accuracy"].idxmax(), "trial_id"]) if not ok.empty else "?"


def _with_order(folder: ExperimentFolder, table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``order`` (1, 2, ... in creation order, from Tune's folder counter)."""
    dirs = folder.trial_dirs(table["trial_id"])
    table = table.copy()
    counters = [folder.trial_counter(dirs[t], t) if t in dirs else None for t in table["trial_id"]]
    if all(c is not None for c in counters) and len(set(counters)) == len(counters):
        table["order"] = counters
    else:
        table["order"] = range(1, len(table) + 1)
    return table.sort_values("order").reset_index(drop=True)


def _learning_curves(folder: ExperimentFolder, table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{trial_id: DataFrame(epoch, val_accuracy)} from each trial's progress.csv."""
    out = {}
    for tid, df in folder.progress(table["trial_id"]).items():
        if "val_accuracy" in df:
            df = df[["training_iteration", "val_accuracy"]].dropna()
            out[tid] = df.rename(columns={"training_iteration": "epoch"})
    return out


def _asha_rungs(folder: ExperimentFolder, table: pd.DataFrame) -> list[int]:
    try:
        from .space import load_space

        space = load_space(folder.space_yaml, upgrade_earlier=True)
    except Exception:
        return []
    asha = space.search.asha
    if asha is None:
        return []
    top = int(table["epochs"].max()) if len(table) else 0
    rungs, r = [], max(int(asha.grace_period), 1)
    while r < top:
        rungs.append(r)
        r *= max(int(asha.reduction_factor), 2)
    return rungs


def _importance(folder: ExperimentFolder) -> dict:
    """Optuna's fANOVA importances on the study, or why there are none.

    COMPLETE trials are used when there are at least MIN_IMPORTANCE_TRIALS; otherwise ASHA-stopped
    (PRUNED) trials join, scored by their last reported epoch, and the result says so.
    """
    journal = folder.journal
    if not journal.is_file():
        return {"note": f"no Optuna study ({journal.name} is missing)."}
    try:
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = folder.load_study()
        # Importance for the first objective (the one that ranks): one value per trial.
        complete = [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                              value=t.values[0])
                    for t in study.trials if t.state == TrialState.COMPLETE and t.values]
        pruned = [t for t in study.trials
                  if t.state == TrialState.PRUNED and t.intermediate_values]
        counts = f"{len(complete)} COMPLETE, {len(pruned)} PRUNED (ASHA-stopped)"
        if len(complete) >= MIN_IMPORTANCE_TRIALS:
            used, basis = complete, f"the {len(complete)} COMPLETE trials"
        elif len(complete) + len(pruned) >= MIN_IMPORTANCE_TRIALS:
            used = complete + [optuna.trial.create_trial(
                params=t.params, distributions=t.distributions,
                value=t.intermediate_values[max(t.intermediate_values)]) for t in pruned]
            basis = (f"{len(complete)} COMPLETE trials plus {len(pruned)} PRUNED (ASHA-stopped) "
                     "trials scored by their **last reported epoch** (a lower budget than the "
                     "completed ones: indicative only)")
        else:
            return {"note": f"too few trials to estimate importances ({counts}; at least "
                            f"{MIN_IMPORTANCE_TRIALS} with a value are needed)."}
        varying = sorted({k for t in used for k in t.params
                          if len({json.dumps(u.params.get(k), default=str) for u in used}) > 1})
        if not varying:
            return {"note": f"no searched hyperparameter varies across the trials ({counts})."}
        if len(study.directions) > 1:
            basis += " (for the first objective)"
        tmp = optuna.create_study(direction=study.directions[0])
        tmp.add_trials(used)
        evaluator, method = _importance_evaluator()
        values = optuna.importance.get_param_importances(tmp, evaluator=evaluator)
        return {"values": dict(values), "basis": basis, "counts": counts, "method": method,
                "mixed": len(complete) < MIN_IMPORTANCE_TRIALS}
    except Exception as e:
        return {"note": f"importances could not be computed: {type(e).__name__}: {e}"}


def _importance_evaluator():
    """fANOVA (Optuna's default) when scikit-learn is installed, else PED-ANOVA (numpy only)."""
    import optuna

    try:
        import sklearn  # noqa: F401  (fANOVA's random forest)

        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA, seed 0"
    except ImportError:
        return (optuna.importance.PedAnovaImportanceEvaluator(),
                "PED-ANOVA: how much each hyperparameter matters for reaching the top 10% of "
                "trials; Optuna's default fANOVA needs scikit-learn, which is not installed")


# --- figures ------------------------------------------------------------------------------------

def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _status_handles(table, winner_id):
    from matplotlib.lines import Line2D

    handles = []
    for status, st in STYLE.items():
        n = int((table["status"] == status).sum())
        if n:
            handles.append(Line2D([], [], color=st["color"], ls=st["ls"], marker=st["marker"],
                                  label=f"{st['label']} ({n})"))
    handles.append(Line2D([], [], color=WINNER_COLOR, lw=3, marker="*", ms=12,
                          label=f"winner {winner_id}"))
    return handles


def _curves_figure(table, curves, winner_id, rungs):
    from matplotlib.collections import LineCollection

    fig = _figure(8, 5)
    ax = fig.add_subplot()
    for rung in rungs:
        ax.axvline(rung, color="0.85", lw=1, zorder=0)
    # One collection of lines and one scatter of curve ends per status, not two artists per
    # trial: a 1,000-trial report draws in a second (bench/bench_scale.py).
    lines: dict[str, list] = {}
    ends: dict[str, list] = {}
    win = None
    for row in table.itertuples():
        df = curves.get(row.trial_id)
        if df is None or df.empty:
            continue
        xy = df[["epoch", "val_accuracy"]].to_numpy(dtype=float)
        status = row.status if row.status in STYLE else FAILED
        if row.trial_id == winner_id:
            win = df
        else:
            lines.setdefault(status, []).append(xy)
        ends.setdefault(status, []).append(xy[-1])  # where ASHA stopped it, or where it failed
    # Fainter lines when there are many: the mass of curves stays readable.
    alpha = 0.8 if len(table) <= 50 else max(0.15, 0.8 * (50 / len(table)) ** 0.5)
    for status, segments in lines.items():
        st = STYLE[status]
        ax.add_collection(LineCollection(segments, colors=st["color"], linestyles=st["ls"],
                                         linewidths=1.4, alpha=alpha, zorder=2))
    for status, points in ends.items():
        st = STYLE[status]
        x, y = zip(*points)
        ax.scatter(x, y, marker=st["marker"], color=st["color"], s=30, zorder=4)
    if win is not None:
        ax.plot(win["epoch"], win["val_accuracy"], color=WINNER_COLOR, lw=3, zorder=3)
        best = win.loc[win["val_accuracy"].idxmax()]
        ax.plot([best["epoch"]], [best["val_accuracy"]], marker="*", ms=16,
                color=WINNER_COLOR, mec="k", zorder=5)
    ax.autoscale_view()
    handles = _status_handles(table, winner_id)
    if rungs:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.8", lw=1, label="ASHA rungs"))
    ax.legend(handles=handles, loc="best", fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("PublicTest accuracy")
    ax.set_title("Learning curves of all trials (PublicTest accuracy per epoch)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    return fig


def _order_figure(table, winner_id):
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    acc = table["best_val_accuracy"]
    floor = (acc.min() if acc.notna().any() else 0.0)
    span = (acc.max() - floor) if acc.notna().any() else 1.0
    fail_y = floor - 0.08 * (span or 0.1)
    running = acc.where(table["status"] != FAILED).cummax()
    ax.step(table["order"], running, where="post", color="0.5", lw=1.2, label="best so far")
    for status, st in STYLE.items():
        sel = table[table["status"] == status]
        if sel.empty:
            continue
        y = [fail_y] * len(sel) if status == FAILED else sel["best_val_accuracy"]
        y = [fail_y if (isinstance(v, float) and math.isnan(v)) else v for v in y]
        ax.scatter(sel["order"], y, marker=st["marker"], color=st["color"], s=50, zorder=3,
                   label=f"{st['label']} ({len(sel)})")
    win = table[table["trial_id"] == winner_id]
    if not win.empty:
        ax.scatter(win["order"], win["best_val_accuracy"], marker="*", s=300, color=WINNER_COLOR,
                   edgecolor="k", zorder=4, label=f"winner {winner_id}")
    if (table["status"] == FAILED).any():
        ax.axhline(fail_y, color=STYLE[FAILED]["color"], lw=0.6, ls=":")
        ax.annotate(FAILED, (table["order"].min(), fail_y), xytext=(0, 4),
                    textcoords="offset points", color=STYLE[FAILED]["color"], fontsize=8)
    if len(table) <= 20:
        ax.set_xticks(table["order"], [f"{o}\n{t}" for o, t in zip(table["order"], table["trial_id"])],
                      fontsize=7)
    ax.set_xlabel("trial (creation order)")
    ax.set_ylabel("best PublicTest accuracy")
    ax.set_title("Best PublicTest accuracy by trial order")
    ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _pareto_figure(table, objectives, constraints, front, winner_id):
    """Accuracy against the second objective (latency by default): point size = parameters,
    the front as a step line, constraint lines, each point labelled backbone@input."""
    names = list(objectives)
    x_name = names[1] if len(names) > 1 and names[1] != "val_loss" else "latency_ms"
    fig = _figure(8.5, 5.5)
    ax = fig.add_subplot()
    done = table.dropna(subset=[x_name, "best_val_accuracy"])
    size = 30 + 400 * (done["params_m"] / max(float(done["params_m"].max()), 1e-9))
    feasible = feasible_mask(done)
    groups = [("completed, feasible", (done["status"] == COMPLETED) & feasible, "#1f77b4", "o"),
              ("completed, breaks a constraint", (done["status"] == COMPLETED) & ~feasible, "0.6", "X"),
              ("stopped early by ASHA (lower budget)", done["status"] == STOPPED_EARLY, "#ff7f0e", "v")]
    for label, mask, color, marker in groups:
        if mask.any():
            ax.scatter(done.loc[mask, x_name], done.loc[mask, "best_val_accuracy"], s=size[mask],
                       color=color, marker=marker, alpha=0.75, edgecolor="k", lw=0.5,
                       label=f"{label} ({int(mask.sum())})")
    for _, r in done.iterrows():
        ax.annotate(f"{r.get('config/backbone', '')}@{r.get('config/input_size', '')}",
                    (r[x_name], r["best_val_accuracy"]), xytext=(4, 3),
                    textcoords="offset points", fontsize=7)
    if front is not None and not front.empty:
        pts = front.sort_values(x_name)
        ax.step(pts[x_name], pts["best_val_accuracy"], where="post", color=WINNER_COLOR, lw=1.5,
                label=f"Pareto front ({len(pts)})")
    win = done[done["trial_id"] == winner_id]
    if not win.empty:
        ax.scatter(win[x_name], win["best_val_accuracy"], marker="*", s=350, color=WINNER_COLOR,
                   edgecolor="k", zorder=5, label=f"winner {winner_id}")
    for key, value in (constraints.get(x_name) or {}).items():
        ax.axvline(value, color="#d62728", ls="--", lw=1, label=f"{x_name} {'<=' if key == 'max' else '>='} {value:g}")
    ax.set_xlabel(f"{x_name} ({PROFILE_METRICS.get(x_name, '')})")
    ax.set_ylabel("best PublicTest accuracy")
    others = ", ".join(f"{n} {'<=' if k == 'max' else '>='} {v:g}" for n, b in constraints.items()
                       if n != x_name for k, v in b.items())
    ax.set_title("Accuracy vs. " + x_name + " (point size: parameters)"
                 + (f"; also constrained: {others}" if others else ""), fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _deployment_lines(table, summary, front, winner_id, figures, problems) -> list[str]:
    """The measures: where latency was measured, the Pareto front, the fastest model within a
    point of the best."""
    lines = ["", "## Accuracy vs. cost", ""]
    machines = sorted({m for m in table.get("latency_machine", pd.Series(dtype=str)).dropna() if m})
    threads = sorted({int(t) for t in table.get("latency_threads", pd.Series(dtype=float)).dropna()})
    lines.append(f"Latency: batch 1, ms per face, median of 50 runs through ONNX Runtime "
                 f"({', '.join(map(str, threads)) or '?'} thread(s)), measured on "
                 f"{'; '.join(machines) or 'an unrecorded machine'}. Objectives: "
                 f"{summary.get('objectives', {})}; constraints: "
                 f"{summary.get('constraints') or 'none'}. Winner rule: "
                 f"{summary.get('winner_rule', 'the best trial')}.")
    lines += _figure_lines("pareto", "Accuracy vs. latency", figures, problems)
    if front is not None and not front.empty:
        cols = ["trial_id", "config/backbone", "config/input_size", "best_val_accuracy",
                "latency_ms", "params_m", "macs_m"]
        cols = [c for c in cols if c in front]
        lines += ["", "Pareto front (completed trials meeting the constraints):", "",
                  "| " + " | ".join(c.removeprefix("config/") for c in cols) + " |",
                  "|" + " --- |" * len(cols)]
        lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for _, r in front.iterrows()]
        best = front["best_val_accuracy"].max()
        near = front[front["best_val_accuracy"] >= best - 0.01].sort_values("latency_ms")
        if not near.empty:
            r = near.iloc[0]
            lines += ["", f"Fastest within 1 pt of the best PublicTest accuracy: `{r['trial_id']}` "
                      f"({r.get('config/backbone', '')} at {r.get('config/input_size', '')} px): "
                      f"{r['best_val_accuracy']:.4f}, {r['latency_ms']:.2f} ms, "
                      f"{r['params_m']:.2f} M params, {r['macs_m']:.0f} M MACs."]
    retrained = summary.get("winner_measures_retrained")
    if retrained:
        lines += ["", f"The retrained winner, measured again on {retrained['machine']}: "
                  f"{retrained['latency_ms']:.2f} ms, {retrained['params_m']:.2f} M params, "
                  f"{retrained['macs_m']:.0f} M MACs."]
    if summary.get("pareto_retrained"):
        rows = summary["pareto_retrained"]
        lines += ["", "Every front point retrained and scored once on PrivateTest (pareto.csv):", "",
                  "| trial | backbone | input | PublicTest | PrivateTest | latency (search) | "
                  "latency (retrained) | params (M) |", "|" + " --- |" * 8]
        lines += [f"| `{r['trial_id']}` | {r['backbone']} | {r['input_size']} | "
                  f"{r['public_test_accuracy']:.4f} | {r['private_test_accuracy']:.4f} | "
                  f"{r['latency_ms_search']:.2f} | {r['latency_ms_retrained']:.2f} | "
                  f"{r['params_m']:.2f} |" for r in rows]
    return lines


def _importance_figure(importance):
    values = importance["values"]
    names = list(values)[::-1]
    fig = _figure(7, max(3.0, 0.5 * len(names) + 1.5))
    ax = fig.add_subplot()
    bars = ax.barh(names, [values[n] for n in names],
                   color="#9467bd" if importance.get("mixed") else "#1f77b4")
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    ax.set_xlim(0, max(max(values.values()) * 1.2, 0.05))
    ax.set_xlabel(f"importance ({importance['method'].split(':')[0].split(',')[0]}, normalised)")
    title = "Hyperparameter importance"
    if importance.get("mixed"):
        title += "\n(includes ASHA-stopped trials at their last epoch)"
    ax.set_title(title)
    return fig


def _confusion_figure(metrics: dict, title: str):
    import numpy as np

    from fer_models.data import EMOTIONS

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    labels = list(EMOTIONS)[:len(cm)]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center",
                    fontsize=8, color="white" if norm[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), [f"{l}\nn={int(n)}" for l, n in zip(labels, rows[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} confusion matrix (rows normalised; counts)\n"
                 f"accuracy {metrics['accuracy']:.4f}, n={metrics['n']}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return fig


def _per_class_figure(metrics: dict):
    import numpy as np

    names = list(metrics["per_class_accuracy"])
    support = np.asarray(metrics["confusion_matrix"]).sum(axis=1) if metrics.get("confusion_matrix") \
        else [None] * len(names)
    series = [("plain", metrics["per_class_accuracy"], metrics["accuracy"], "#1f77b4")]
    if metrics.get("tta", {}).get("per_class_accuracy"):
        series.append(("ten-crop TTA", metrics["tta"]["per_class_accuracy"],
                       metrics["tta"]["accuracy"], "#ff7f0e"))
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for k, (label, per_class, overall, color) in enumerate(series):
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, [per_class[n] for n in names],
                      width, color=color, label=f"{label} (overall {overall:.3f})")
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.axhline(overall, color=color, ls="--", lw=1)
    ax.set_xticks(x, [f"{n}\n(n={int(s)})" if s is not None else n for n, s in zip(names, support)])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("PrivateTest accuracy (recall)")
    ax.set_title("PrivateTest accuracy per class (dashed: overall)")
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return fig


# --- markdown -----------------------------------------------------------------------------------

def _cell(v) -> str:
    if is_missing(v):
        return ""
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.3g}" if abs(v) < 0.01 else f"{v:.4f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _ensemble_lines(ens: dict) -> list[str]:
    """The top-k ensemble beside each of its members (saved in ensemble/)."""
    lines = ["", f"### Top-{ens['k']} ensemble (mean of the members' probabilities, `ensemble/`)", "",
             "| model | trial | backbone | accuracy | TTA accuracy | macro-F1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {m['member']} | `{m.get('trial_id')}` | {m['backbone']} | {m['accuracy']:.4f} | "
              f"{_cell(m.get('accuracy_tta'))} | {m['macro_f1']:.4f} |" for m in ens["members"]]
    tta = ens.get("tta", {}).get("accuracy")
    lines.append(f"| **ensemble** | | | **{ens['accuracy']:.4f}** | {_cell(tta)} | {ens['macro_f1']:.4f} |")
    return lines


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f} (1 seed, no sd)"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} ({len(values)} seeds)"


def _data_arg(command: str) -> str | None:
    try:
        args = shlex.split(command)
    except ValueError:
        return None
    for i, a in enumerate(args):
        if a == "--data" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--data="):
            return a.split("=", 1)[1]
    return None


def _markdown(folder, summary, metrics, table, winner_id, importance, figures, problems,
              front=None) -> str:
    lines = _headline_lines(folder, summary, metrics, table, winner_id)
    lines += _private_test_lines(metrics, figures, problems)
    if "latency_ms" in table:
        lines += _deployment_lines(table, summary, front, winner_id, figures, problems)
    lines += _search_lines(importance, figures, problems)
    lines += _trials_lines(table, winner_id)
    lines += _reproduce_lines(folder, summary)
    return "\n".join(lines)


def _headline_lines(folder, summary, metrics, table, winner_id) -> list[str]:
    """The winner, what it beat, PrivateTest, and the run's facts."""
    name = folder.path.name
    lines = [f"# Search report: {name}", ""]
    win = table[table["trial_id"] == winner_id]
    w = win.iloc[0] if not win.empty else None
    if w is not None:
        lines.append(f"**Winner: trial `{winner_id}`** (trial {int(w['order'])} of {len(table)}, "
                     f"{w['status']}): best PublicTest accuracy **{w['best_val_accuracy']:.4f}** at "
                     f"epoch {int(w['best_epoch'])} of {int(w['epochs'])}.")
    else:
        lines.append(f"**Winner: trial `{winner_id}`**.")
    if summary.get("vs_default") is not None:
        line = describe_comparison(summary["vs_default"])
        lines.append(line[0].upper() + line[1:] + ".")
    if metrics:
        tta = f", ten-crop TTA **{metrics['tta']['accuracy']:.4f}**" if "tta" in metrics else ""
        epochs = summary.get("retrain_epochs", metrics.get("retrain_epochs", "?"))
        lines.append(f"Retrained for {epochs} epoch{'' if epochs == 1 else 's'} and scored once on "
                     f"PrivateTest: accuracy **{metrics['accuracy']:.4f}**{tta} (n={metrics['n']}).")
    lines += ["", "| | |", "| --- | --- |"]
    facts = [
        ("space", f"`{summary.get('space', '')}`"),
        ("sampler / scheduler", f"{summary.get('sampler', '')} (seed {summary.get('seed', '')}) / "
                                f"{summary.get('scheduler', '')}"),
        ("selection metric", f"{summary.get('metric', '')} on PublicTest (best epoch of each trial)"),
        ("trials run", f"{len(table)}: {int((table.status == COMPLETED).sum())} completed, "
                       f"{int((table.status == STOPPED_EARLY).sum())} stopped early by ASHA, "
                       f"{int((table.status == FAILED).sum())} failed"),
        ("epochs trained (all trials)", f"{int(table['epochs'].sum())}"),
        ("starting weights", ", ".join(f"{w}: {n} trial{'' if n == 1 else 's'}" for w, n in
                                       table["weights"].value_counts().items())
         if "weights" in table else ""),
        ("wall time", f"{summary['wall_seconds'] / 60:.1f} min" if "wall_seconds" in summary else ""),
    ]
    lines += [f"| {k} | {v} |" for k, v in facts]

    return lines


def _private_test_lines(metrics, figures, problems) -> list[str]:
    lines = ["", "## PrivateTest (the retrained winner, scored once)", ""]
    if metrics:
        seeds = metrics.get("per_seed", [])
        plain = [s["accuracy"] for s in seeds] or [metrics["accuracy"]]
        tta_seeds = [s["accuracy_tta"] for s in seeds if "accuracy_tta" in s]
        lines += ["| | accuracy | mean ± sd over seeds | macro-F1 | loss (NLL) |",
                  "| --- | --- | --- | --- | --- |",
                  f"| plain | {metrics['accuracy']:.4f} | {_mean_sd(plain)} | "
                  f"{metrics['macro_f1']:.4f} | {metrics['loss']:.4f} |"]
        if "tta" in metrics:
            t = metrics["tta"]
            lines.append(f"| ten-crop + flip TTA | {t['accuracy']:.4f} | "
                         f"{_mean_sd(tta_seeds or [t['accuracy']])} | {t['macro_f1']:.4f} | "
                         f"{t['loss']:.4f} |")
        lines += ["", f"n = {metrics['n']}; the single-model figures (and the saved model) are "
                      f"seed {metrics.get('seed', '?')}'s."]
        if len(seeds) > 1:
            # weights of epoch: the best PublicTest epoch's with keep_best, else the last's
            lines += ["", "| seed | accuracy | TTA accuracy | macro-F1 | weights of epoch |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [f"| {s['seed']} | {s['accuracy']:.4f} | {_cell(s.get('accuracy_tta'))} | "
                      f"{s['macro_f1']:.4f} | {s.get('weights_epoch', '')} |" for s in seeds]
        if "ensemble" in metrics:
            lines += _ensemble_lines(metrics["ensemble"])
    else:
        lines.append("metrics.json is missing: no PrivateTest figures.")
    for key, caption in (("confusion", "PrivateTest confusion matrix"),
                         ("per_class", "PrivateTest accuracy per class")):
        lines += _figure_lines(key, caption, figures, problems)
    return lines


def _search_lines(importance, figures, problems) -> list[str]:
    lines = ["", "## The search"]
    lines += _figure_lines("curves", "Learning curves", figures, problems,
                           "Solid: completed; dashed, ending in a triangle: stopped early by ASHA "
                           "(grey verticals: ASHA rungs); dotted, ending in a cross: failed; "
                           "thick green: the winner (star: its best epoch).")
    lines += _figure_lines("order", "Best PublicTest accuracy by trial order", figures, problems)

    lines += ["", "### Hyperparameter importance", ""]
    if importance.get("values"):
        lines.append(f"Optuna `get_param_importances` ({importance['method']}) on "
                     f"{importance['basis']}. Study: {importance['counts']}. With few trials these "
                     "numbers are rough.")
        lines += ["", "| hyperparameter | importance |", "| --- | --- |"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importance["values"].items()]
        lines += _figure_lines("importance", "Hyperparameter importance", figures, problems)
    else:
        lines.append(f"Not estimated: {importance.get('note', 'no data')}")

    return lines


def _trials_lines(table, winner_id) -> list[str]:
    lines = ["", "### Trials", ""]
    config_cols = config_columns(table)
    varying = [c for c in config_cols
               if table[c].astype(str).nunique(dropna=False) > 1]
    head = ["#", "trial", "status", "epochs", "best PublicTest acc.", "best epoch",
            "last acc.", "seconds"] + [c[len("config/"):] for c in varying] + ["error"]
    weights_vary = "weights" in table and table["weights"].nunique() > 1
    if weights_vary:  # which trials started from ImageNet weights, in words
        head.insert(-1, "weights")
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, r in table.iterrows():
        tid = f"**`{r['trial_id']}`** (winner)" if r["trial_id"] == winner_id else f"`{r['trial_id']}`"
        cells = [str(int(r["order"])), tid, r["status"], _cell(r["epochs"]),
                 _cell(r["best_val_accuracy"]), _cell(r["best_epoch"]), _cell(r["last_val_accuracy"]),
                 f"{r['seconds']:.0f}" if not is_missing(r["seconds"]) else ""]
        cells += [_cell(r[c]) for c in varying] + ([_cell(r["weights"])] if weights_vary else [])
        cells += [_cell(r["error"])]
        lines.append("| " + " | ".join(cells) + " |")
    fixed = [c for c in config_cols if c not in varying]
    if fixed:
        lines += ["", "Same in every trial: " + ", ".join(
            f"{c[len('config/'):]}={_cell(table[c].iloc[0])}" for c in fixed) + "."]
    failed = table[table["status"] == FAILED]
    if not failed.empty:
        lines += ["", "Failed trials:", ""]
        lines += [f"- `{r['trial_id']}` after {int(r['epochs'])} epoch(s): {r['error'] or 'no reason recorded'}"
                  for _, r in failed.iterrows()]

    return lines


def _reproduce_lines(folder, summary) -> list[str]:
    lines = ["", "## The winner's configuration (`best.yaml`)", ""]
    best = folder.best_yaml
    lines += (["```yaml", best.read_text().rstrip(), "```"] if best.is_file()
              else ["best.yaml is missing."])
    lines += ["", "## Reproduce", ""]
    command = summary.get("command", "")
    if command:
        lines += ["The whole search (from the folder it was started in):", "", "```bash",
                  command, "```"]
    data = _data_arg(command)
    lines += ["", "Only the winner (one trial, then the same retrain and PrivateTest scoring):", "",
              "```bash", f"python -m search.run {shlex.quote(str(best))}"
              + (f" --data {shlex.quote(data)}" if data else ""), "```",
              "", "Every trial and the retrain in TensorBoard (scalars, HParams, the confusion "
              "matrix under Images):", "", "```bash",
              f"tensorboard --logdir {shlex.quote(str(folder.path))} --host 127.0.0.1", "```", ""]
    return lines


def _figure_lines(key, caption, figures, problems, note: str = "") -> list[str]:
    if key in figures:
        return ["", f"![{caption}]({figures[key]})"] + (["", note] if note else [])
    if key in problems:
        return ["", f"_{caption}: the figure could not be drawn ({problems[key]})._"]
    return []


def main(argv: list[str] | None = None) -> int:
    """``python -m search.report DIR...``: rewrite the retrain's TensorBoard logs and report.md."""
    import argparse
    import sys

    from fer_models.cli import EXIT_BAD_INPUT, error_line, prog
    from fer_models.textfiles import InputFileError

    parser = argparse.ArgumentParser(prog=prog("search.report"),
                                     description="Rewrite report.md, its plots and the retrain's "
                                                 "TensorBoard logs of finished experiments.")
    parser.add_argument("experiments", nargs="+", help="experiment folders (results/<name>)")
    args = parser.parse_args(argv)
    for arg in args.experiments:
        folder = ExperimentFolder(arg)
        missing = folder.missing(folder.TRIALS, folder.SUMMARY, folder.METRICS)
        if missing:
            print(f"error: {folder.path}: not a finished experiment folder "
                  f"(no {', '.join(missing)})", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:  # every folder's records read before anything is rewritten
            folder.read_summary(), folder.read_metrics()
        except InputFileError as e:
            print(error_line(e), file=sys.stderr)
            return EXIT_BAD_INPUT
    for arg in args.experiments:
        print(log_retrain_tensorboard(Path(arg)))
        print(write_report(Path(arg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
