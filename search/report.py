"""The end-of-run report and TensorBoard logs of an experiment folder.

``search/finish.py`` calls both at the end of a run; to redo them for a finished experiment:
``python -m search.report results/<name>``.

* :func:`log_retrain_tensorboard` writes ``retrain/`` (the winner's retrain, under the same tags as
  Ray's trials so the curves overlay; PrivateTest confusion matrix as an image; an hparams session)
  and the HParams additions of :mod:`search.tensorboard_logs`.
* :func:`write_report` writes ``report.md`` and its PNGs beside it.

Its figures are drawn by :mod:`search.report_figures`.
"""
from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

import pandas as pd

from . import report_figures as charts
from . import tensorboard_logs as tbl
from .experiment_folder import (COMPLETED, FAILED, STOPPED_EARLY, ExperimentFolder,
                                config_columns, is_missing)
from .default_baseline import describe_comparison
from .objectives import pareto_front

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


def log_retrain_tensorboard(experiment: Path) -> Path:
    """TensorBoard events for the retrain in ``experiment/retrain/``, plus the HParams additions
    (an experiment-level summary and the sessions Ray did not write). Returns the retrain run."""
    metrics = ExperimentFolder(experiment).read_metrics()
    figures = {}
    if metrics.get("confusion_matrix"):
        figures["private_test/confusion_matrix"] = charts.confusion_figure(metrics, "PrivateTest")
        if metrics.get("tta", {}).get("confusion_matrix"):
            figures["private_test/confusion_matrix_tta"] = charts.confusion_figure(
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
            fig.savefig(path, dpi=charts.DPI)
            figures[key] = path.name
        except Exception as e:  # one figure must not cost the whole report
            problems[key] = f"{type(e).__name__}: {e}"

    draw("curves", charts.curves_figure, table, curves, winner_id, _asha_rungs(folder, table))
    draw("order", charts.order_figure, table, winner_id)
    importance = _importance(folder)
    if importance.get("values"):
        draw("importance", charts.importance_figure, importance)
    objectives = summary.get("objectives") or {}
    front = None
    if "latency_ms" in table and objectives:
        front = pareto_front(table, objectives) if len(objectives) > 1 else None
        draw("pareto", charts.pareto_figure, table, objectives, summary.get("constraints") or {},
             front, winner_id)
    if metrics.get("confusion_matrix"):
        draw("confusion", charts.confusion_figure, metrics, "PrivateTest")
    if metrics.get("per_class_accuracy"):
        draw("per_class", charts.per_class_figure, metrics)

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
    """The epochs of ASHA's rungs as the search set them: its space with run.json's overrides."""
    try:
        from .overrides import apply_overrides
        from .space import load_space

        space = load_space(folder.space_yaml, upgrade_earlier=True)
        apply_overrides(space, folder.read_run().get("overrides") or {})
    except Exception:
        return []
    asha = space.search.asha
    if asha is None:
        return []
    top = int(table["epochs"].max()) if len(table) else 0
    rungs, r = [], asha.first_rung(space.max_epochs)
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


# --- markdown -----------------------------------------------------------------------------------

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
