"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state,
no display): each function takes the experiment's tables and returns a ``Figure`` for
:mod:`search.report` to save beside report.md (and the confusion matrix for TensorBoard)."""
from __future__ import annotations

import math

from fer_models.profile import PROFILE_METRICS

from .experiment_folder import COMPLETED, FAILED, STOPPED_EARLY
from .objectives import feasible_mask

__all__ = ["DPI", "confusion_figure", "curves_figure", "importance_figure", "order_figure",
           "pareto_figure", "per_class_figure"]

DPI = 110
STYLE = {  # status -> line/marker style, shared by the figures
    COMPLETED: dict(color="#1f77b4", ls="-", marker="o", label=COMPLETED),
    STOPPED_EARLY: dict(color="#ff7f0e", ls="--", marker="v", label="stopped early by ASHA"),
    FAILED: dict(color="#d62728", ls=":", marker="X", label=FAILED),
}
WINNER_COLOR = "#2ca02c"


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


def curves_figure(table, curves, winner_id, rungs):
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


def order_figure(table, winner_id):
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


def pareto_figure(table, objectives, constraints, front, winner_id):
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


def importance_figure(importance):
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


def confusion_figure(metrics: dict, title: str):
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


def per_class_figure(metrics: dict):
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
