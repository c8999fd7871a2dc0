"""Replay search strategies over the FER tabular benchmark, in simulated time.

Each replay runs this project's real searcher (``search.searcher.PrunedAwareOptunaSearch`` over the
space's own define-by-run function, with the registry's Optuna samplers) and Ray Tune's real
schedulers (``ASHAScheduler`` / ``AsyncHyperBandScheduler``, as ``search.experiment`` builds them)
against the table recorded by ``bench/record_table.py``: a proposed configuration trains as the
table's nearest configuration (log scale for log ranges, 1 per differing choice), its epochs
arrive at the times the recording measured, ``--concurrency`` at once, as Syne Tune's simulator
backend replays a tabulated benchmark. Nothing trains: 100 replays of a strategy take seconds.

    .venv/bin/python bench/bench_replay.py --table bench/fer-table.jsonl --replays 100

For every strategy and every budget (in full-horizon trainings' worth of simulated time) it
records the *final-horizon* PublicTest accuracy of the configuration the strategy would pick
(the trial with the best PublicTest epoch so far, as ``search.run`` picks its winner), and prints
the median and quartiles over the replays, the budget at which the median comes within ``--gap``
points of the table's best final accuracy, and that budget against random search's.
``--plot`` draws the anytime curves; ``--csv`` writes every (strategy, replay, budget) point.
``--plateau N ...`` also replays ``search.plateau_trials`` (the real ``search.plateau.PlateauStop``,
fed as Tune feeds it): the budget it saves and the accuracy it costs.
``random+oracle@E`` (not in the default list) screens random proposals at epoch E with each
config's final accuracy known: a reference point for early stopping at that epoch.

Not replayed: PBT and PB2, which change a trial's hyperparameters while it trains; a table of
fixed-configuration curves has no curve for the mixture.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from search.space import SearchSpace, load_space  # noqa: E402
from search.trainable import FINISHED_KEY  # noqa: E402

METRIC = "val_accuracy"


# --- the table ---------------------------------------------------------------------------------

@dataclass
class Table:
    configs: list[dict]
    accuracy: np.ndarray     # (configs, epochs) PublicTest accuracy per epoch
    loss: np.ndarray         # (configs, epochs) PublicTest loss per epoch
    seconds: np.ndarray      # (configs, epochs) measured seconds of each epoch

    @property
    def horizon(self) -> int:
        return self.accuracy.shape[1]

    @property
    def final(self) -> np.ndarray:
        """Each config's accuracy at the last epoch: what training it to the horizon delivers."""
        return self.accuracy[:, -1]

    @classmethod
    def read(cls, path: Path) -> "Table":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        horizon = max(len(r["epochs"]) for r in rows)
        full = [r for r in rows if len(r["epochs"]) == horizon]  # failed/diverged rows: see below
        configs, acc, loss, secs = [], [], [], []
        for r in full:
            configs.append(r["config"])
            acc.append([e["val_accuracy"] for e in r["epochs"]])
            loss.append([e["val_loss"] for e in r["epochs"]])
            secs.append([e["seconds"] for e in r["epochs"]])
        for r in rows:  # a config that failed at once scores chance at every epoch, costs 1 s
            if not r["epochs"]:
                configs.append(r["config"])
                acc.append([1 / 7] * horizon)
                loss.append([math.log(7)] * horizon)
                secs.append([1.0] * horizon)
        return cls(configs, np.array(acc), np.array(loss), np.array(secs))


class Nearest:
    """The table's config nearest to a proposal: each searched param scaled to [0, 1] over its
    range (log for log ranges), a differing choice counting 1."""

    def __init__(self, space: SearchSpace, table: Table):
        self.params = [p for p in space.params.values() if p.searched]
        self.table = np.array([self._encode(c) for c in table.configs])
        self.choice = np.array([not p.is_range for p in self.params])

    def _encode(self, config: dict) -> list:
        return [p.unit(config.get(p.name, p.derived_default())) for p in self.params]

    def __call__(self, config: dict) -> int:
        x = np.array(self._encode(config))
        diff = np.where(self.choice, (self.table != x).astype(float), (self.table - x) ** 2)
        return int(np.argmin(diff.sum(1)))


# --- strategies --------------------------------------------------------------------------------

@dataclass
class Strategy:
    name: str
    sampler: str
    scheduler: Callable[["Table", int], object] | None   # (table, seed) -> a scheduler, or None
    default_first: bool = False   # the space's default configuration as trial 1, as search.run does
    epochs: int | None = None     # every trial ends (finished) after this many epochs
    told_at: int | None = None    # the study learns each trial's accuracy at this epoch (below)
    reference: bool = False       # a yardstick no search can run (the oracle): never a default


def asha(grace: int = 1, rf: int = 3, brackets: int = 1, metric: str = METRIC):
    def build(table: Table, seed: int):
        from ray.tune.schedulers import AsyncHyperBandScheduler

        horizon = table.horizon
        np.random.seed(seed)  # Ray draws a trial's bracket from numpy's global RNG
        return AsyncHyperBandScheduler(time_attr="training_iteration", metric=metric,
                                       mode="max" if metric == METRIC else "min", max_t=horizon,
                                       grace_period=min(grace, horizon), reduction_factor=rf,
                                       brackets=brackets)
    return build


BOOTSTRAP_RESAMPLES = 1000
ORACLE_GAP_PT = 1.0   # the oracle's "good": within this of the table's best (--gap must match)


def oracle(rung: int):
    """Not a strategy anyone can run: a screen that knows each config's final accuracy. At epoch
    ``rung`` it stops every trial whose config finishes more than ORACLE_GAP_PT under the table's
    best and lets the rest run to the horizon. With random proposals its budget is what the
    proposals cost until a good config is drawn and trained: a reference point for what early
    stopping at that epoch could reach with a perfect ranking."""
    def build(table: Table, _seed: int):
        from ray.tune.schedulers import TrialScheduler

        good = table.final >= table.final.max() - ORACLE_GAP_PT / 100 - 1e-12

        class OracleScreen:
            def on_trial_add(self, *_):
                pass

            def on_trial_complete(self, *_):
                pass

            def on_trial_result(self, _runner, _trial, result):
                if result["training_iteration"] == rung and not good[result["table_row"]]:
                    return TrialScheduler.STOP
                return TrialScheduler.CONTINUE

        return OracleScreen()
    return build


STRATEGIES = {s.name: s for s in [
    Strategy("random", "random", None),
    Strategy("random+asha", "random", asha()),
    Strategy("tpe", "tpe", None),
    Strategy("tpe+asha", "tpe", asha()),
    Strategy("tpe_quick+asha", "tpe_quick", asha()),
    Strategy("random+hyperband", "random", asha(brackets=3)),
    Strategy("tpe+hyperband", "tpe", asha(brackets=3)),          # BOHB-like: TPE + Hyperband
    Strategy("tpe+asha@3", "tpe", asha(grace=3)),                # first rung where ranks settle
    Strategy("random+asha@3", "random", asha(grace=3)),
    # Fewer trials past the first rung: one in five, not one in three.
    Strategy("random+asha@3/rf5", "random", asha(grace=3, rf=5)),
    Strategy("random+asha@2/rf5", "random", asha(grace=2, rf=5)),
    Strategy("random+asha@2/rf8", "random", asha(grace=2, rf=8)),
    # The same first rung with more trials past it, and a first rung where ranks have settled.
    Strategy("random+asha@2/rf2", "random", asha(grace=2, rf=2)),
    Strategy("random+asha@2/rf3", "random", asha(grace=2, rf=3)),
    Strategy("random+asha@4/rf5", "random", asha(grace=4, rf=5)),
    Strategy("random+hyperband@2/rf5", "random", asha(grace=2, rf=5, brackets=2)),
    # BOHB's remedy for the pruned-trial ranking (TPE ranks any trial that went further above
    # every pruned one): the model learns every trial at one budget all of them reach, ASHA's
    # first rung, as COMPLETE with that epoch's accuracy; the pick is still the best epoch.
    Strategy("tpe@rung3+asha@3", "tpe", asha(grace=3), told_at=3),
    Strategy("tpe@rung2+asha@2/rf5", "tpe", asha(grace=2, rf=5), told_at=2),
    Strategy("tpe+asha@3+default", "tpe", asha(grace=3), default_first=True),
    Strategy("tpe+asha-loss", "tpe", asha(metric="val_loss")),   # rungs on PublicTest loss
    # Every trial trained to the epoch where rankings settle and no further: the search's pick is
    # retrained anyway, so it need not be finished (every strategy's pick is scored by its
    # final-horizon accuracy).
    Strategy("random@3", "random", None, epochs=3),
    Strategy("tpe@3", "tpe", None, epochs=3),
    Strategy("tpe@4", "tpe", None, epochs=4),
    # Proposals spread evenly (scrambled Sobol) rather than drawn independently.
    Strategy("qmc", "qmc", None),
    Strategy("qmc+asha@3", "qmc", asha(grace=3)),
    Strategy("qmc+asha@3/rf5", "qmc", asha(grace=3, rf=5)),
    Strategy("qmc+asha@2/rf5", "qmc", asha(grace=2, rf=5)),
    Strategy("cmaes+asha@2/rf5", "cmaes", asha(grace=2, rf=5)),
    Strategy("gp+asha", "gp", asha()),   # a Gaussian process: ~100x TPE's cost per proposal
    # cpu.yaml's setting (tpe_quick; its first rung at a third of its trials' epochs, one in two
    # on) at this table's horizon, and the same rungs with random proposals.
    Strategy("tpe_quick+asha@3/rf2", "tpe_quick", asha(grace=3, rf=2)),
    Strategy("random+asha@3/rf2", "random", asha(grace=3, rf=2)),
    # Reference points, not strategies: random proposals screened by an oracle at epoch 1, 2 or 3.
    Strategy("random+oracle@1", "random", oracle(1), reference=True),
    Strategy("random+oracle@2", "random", oracle(2), reference=True),
    Strategy("random+oracle@3", "random", oracle(3), reference=True),
]}
DEFAULT_STRATEGIES = [name for name, s in STRATEGIES.items()
                      if name != "gp+asha" and not s.reference]


# --- one replay --------------------------------------------------------------------------------

def told_at_rung(epoch: int):
    """PrunedAwareOptunaSearch that tells the study each trial's accuracy at ``epoch`` (COMPLETE)
    and nothing after: a model fitted on one common budget, as BOHB fits its model."""
    from search.searcher import PrunedAwareOptunaSearch

    class ToldAtRung(PrunedAwareOptunaSearch):
        def on_trial_result(self, trial_id: str, result: dict):
            if self.is_told(trial_id):
                return
            super().on_trial_result(trial_id, result)
            trial = self.optuna_trial(trial_id)
            if result.get("training_iteration") == epoch and trial is not None:
                self.study.tell(trial, result[METRIC])
                self.mark_told(trial_id)

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False):
            if not self.is_told(trial_id):
                super().on_trial_complete(trial_id, result, error)

    return ToldAtRung


def replay(strategy: Strategy, space: SearchSpace, table: Table, nearest: Nearest, seed: int,
           budget_s: float, concurrency: int, grid_s: np.ndarray,
           plateau=None, storage=None, first: list | None = None,
           trace: list | None = None) -> tuple[np.ndarray, float]:
    """The final-horizon accuracy of the incumbent at each time of ``grid_s`` (nan before the
    first result), and the time ``plateau`` (a ``search.plateau.PlateauStop``, fed every result
    and finished trial as Tune feeds it) would have stopped the search (inf: never).
    ``storage``: the Optuna storage of the study (a warm start seeds it first); ``first``: the
    configurations to run first (else the strategy's); ``trace`` gets (trials started, final
    accuracy of the pick) at every change of the pick."""
    import optuna

    from search.samplers import create_sampler
    from search.searcher import PrunedAwareOptunaSearch
    from ray.tune.schedulers import TrialScheduler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if first is None and strategy.default_first:
        first = [space.default_config()]
    searcher_class = told_at_rung(strategy.told_at) if strategy.told_at else PrunedAwareOptunaSearch
    with warnings.catch_warnings():   # QMC's "experimental", once a replay
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = create_sampler(strategy.sampler, seed)
    searcher = searcher_class(space=space.suggest, metric=METRIC, mode="max", sampler=sampler,
                              points_to_evaluate=first,
                              **(dict(study_name="fer-search", storage=storage)
                                 if storage is not None else {}))
    scheduler = strategy.scheduler(table, seed) if strategy.scheduler else None
    events: list[tuple[float, int, str]] = []
    running: dict[str, tuple[int, int]] = {}   # trial id -> (table row, epochs done)
    incumbent: list[tuple[float, float]] = []  # (time, final accuracy of the pick)
    best_seen = -1.0
    counter = 0
    plateau_at = math.inf

    counter_started = 0

    def start(now: float) -> None:
        nonlocal counter, counter_started
        trial_id = f"t{counter:05d}"
        counter += 1
        counter_started += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = searcher.suggest(trial_id)
        row = nearest({**space.fixed(), **config})
        running[trial_id] = (row, 0)
        if scheduler is not None:
            scheduler.on_trial_add(None, SimpleNamespace(trial_id=trial_id))
        heapq.heappush(events, (now + table.seconds[row, 0], counter, trial_id))

    for _ in range(concurrency):
        start(0.0)
    while events:
        now, _, trial_id = heapq.heappop(events)
        if now > budget_s:
            break
        row, done = running[trial_id]
        epoch = done + 1
        result = {"training_iteration": epoch, METRIC: float(table.accuracy[row, done]),
                  "val_loss": float(table.loss[row, done]), "table_row": row}
        if result[METRIC] > best_seen:
            best_seen = result[METRIC]
            incumbent.append((now, float(table.final[row])))
            if trace is not None:
                trace.append((counter_started, float(table.final[row])))
        searcher.on_trial_result(trial_id, result)
        if plateau is not None:
            plateau.on_trial_result(0, [], SimpleNamespace(trial_id=trial_id), result)
        decision = (scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id), result)
                    if scheduler is not None else TrialScheduler.CONTINUE)
        horizon = min(strategy.epochs or table.horizon, table.horizon)
        if epoch == horizon or decision == TrialScheduler.STOP:
            result[FINISHED_KEY] = epoch == horizon
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                searcher.on_trial_complete(trial_id, result)
            if scheduler is not None:
                scheduler.on_trial_complete(None, SimpleNamespace(trial_id=trial_id), result)
            if plateau is not None:
                plateau.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id))
                if plateau.stop_all() and math.isinf(plateau_at):
                    plateau_at = now
            del running[trial_id]
            start(now)
        else:
            running[trial_id] = (row, epoch)
            heapq.heappush(events, (now + table.seconds[row, epoch], counter, trial_id))
            counter += 1
    times = np.array([t for t, _ in incumbent])
    values = np.array([v for _, v in incumbent])
    at = np.searchsorted(times, grid_s, side="right") - 1
    return np.where(at >= 0, values[np.maximum(at, 0)], np.nan), plateau_at


# --- summary -----------------------------------------------------------------------------------

def first_reach(curves: np.ndarray, grid: np.ndarray, target: float) -> np.ndarray:
    """The first budget of ``grid`` where each row of ``curves`` reaches ``target`` (inf where
    a row never does)."""
    hit = curves >= target
    return np.where(hit.any(1), grid[hit.argmax(1)], math.inf)


def bootstrap_reach(runs: np.ndarray, base: np.ndarray, grid: np.ndarray, target: float,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """90% bootstrap intervals, over replays, of the median curve's budget to reach ``target``
    and of its ratio to ``base``'s (random search's). Replay ``s`` of every strategy draws with
    seed ``s``, so both are resampled with the same replay indices (a paired bootstrap). The
    median curve sits on a few distinct table accuracies, so where it crosses the target moves
    by whole units between resamples: the interval says how far a table's figure can be read."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(runs), size=(resamples, len(runs)))

    def reach_of(curves: np.ndarray) -> np.ndarray:   # 100 resamples at a time: bounded memory
        return np.concatenate([first_reach(np.nanmedian(curves[chunk], axis=1), grid, target)
                               for chunk in np.array_split(picks, max(1, resamples // 100))])

    reach, base_reach = reach_of(runs), reach_of(base)
    with np.errstate(invalid="ignore"):
        ratio = reach / base_reach          # inf / inf: nan, left out of the interval
    # Whole-grid quantiles (no interpolation between a finite budget and inf).
    interval = np.quantile(reach, [0.05, 0.95], method="inverted_cdf")
    ratio = ratio[~np.isnan(ratio)]
    ratio_interval = (np.quantile(ratio, [0.05, 0.95], method="inverted_cdf") if len(ratio)
                      else np.array([math.nan, math.nan]))
    return interval, ratio_interval


def interval_text(interval: np.ndarray) -> str:
    """``1.25-2.00``; one value when both ends are the same (``never``: no resample reaches)."""
    ends = ["never" if math.isinf(v) else "-" if math.isnan(v) else f"{v:.2f}" for v in interval]
    return ends[0] if ends[0] == ends[1] else "-".join(ends)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=str(REPO / "bench" / "fer-table.jsonl"))
    parser.add_argument("--space", default=str(REPO / "spaces" / "wide.yaml"))
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                        choices=list(STRATEGIES))
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--budget", type=float, default=32.0,
                        help="simulated time, in full-horizon trainings of the table's mean config")
    parser.add_argument("--gap", type=float, default=1.0, help="points below the table's best")
    parser.add_argument("--plot", help="write the anytime curves here (PNG)")
    parser.add_argument("--plot-strategies", nargs="+", choices=list(STRATEGIES),
                        help="the strategies the plot draws (default: all of --strategies)")
    parser.add_argument("--csv", help="write each replay's anytime curve here: a row wherever the "
                                      "pick's final accuracy changes (forward-fill to read it at "
                                      "any budget)")
    parser.add_argument("--plateau", type=int, nargs="+", default=[],
                        help="also measure search.plateau_trials = N (each N given): the budget "
                             "it saves and the accuracy it costs, against the full --budget")
    parser.add_argument("--warm-start", action="store_true",
                        help="also measure --warm-start: a search whose lr range ended at 3e-3, "
                             "run for half the budget, seeds the study of a search of the full "
                             "space; trials the warm search needs to reach the cold search's "
                             "final pick, against the trials the cold one needed")
    parser.add_argument("--plateau-gain", type=float, default=0.0,
                        help="search.plateau_gain for --plateau (accuracy units)")
    args = parser.parse_args(argv)
    if args.gap != ORACLE_GAP_PT and any(STRATEGIES[name].reference for name in args.strategies):
        parser.error(f"the oracle strategies screen at {ORACLE_GAP_PT} pt: --gap must be that")
    import ray  # noqa: F401  (Ray's schedulers import it; no Ray runtime is started)

    table = Table.read(Path(args.table))
    space = load_space(args.space)
    nearest = Nearest(space, table)
    unit = float(table.seconds.sum(1).mean())         # one full-horizon training, seconds
    grid = np.linspace(0.25, args.budget, int(args.budget * 4)) * unit / args.concurrency
    best = float(table.final.max())
    target = best - args.gap / 100
    print(f"table: {len(table.configs)} configs x {table.horizon} epochs; best final PublicTest "
          f"{best:.4f}; target {target:.4f} ({args.gap} pt below); one budget unit = one "
          f"full-horizon training ({unit:.0f} s); {args.concurrency} trials at a time; "
          f"{args.replays} replays a strategy")
    print_rank_settling(table)
    units = grid * args.concurrency / unit     # the grid in budget units
    curves, rows, points = {}, [], []
    for name in args.strategies:
        runs = np.array([replay(STRATEGIES[name], space, table, nearest, seed, grid[-1],
                                args.concurrency, grid)[0] for seed in range(args.replays)])
        curves[name] = runs
        med = np.nanmedian(runs, axis=0)
        reach = float(first_reach(med[None], units, target)[0])
        rows.append(dict(strategy=name, reach_units=reach,
                         share_reaching=np.isfinite(first_reach(runs, units, target)).mean(),
                         **{f"median@{b}": float(np.interp(b, units, med)) for b in (4, 8, 16, args.budget)}))
        for seed, run in enumerate(runs):
            # The pick's accuracy is a step function of the budget: keep its changes only.
            changed = np.flatnonzero(~np.isnan(run) & (np.r_[np.nan, run[:-1]] != run))
            points += [(name, seed, float(units[i]), float(run[i])) for i in changed]
    base = next((r["reach_units"] for r in rows if r["strategy"] == "random"), math.nan)
    print(f"\n| strategy | budget to reach best - {args.gap} pt (median curve) | 90% interval | "
          f"vs random | 90% interval | replays reaching it | median @4 | @8 | @16 | "
          f"@{args.budget:g} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["reach_units"] / base if math.isfinite(base) and math.isfinite(r["reach_units"]) else math.nan
        interval, ratio_interval = (bootstrap_reach(curves[r["strategy"]], curves["random"], units,
                                                    target)
                                    if "random" in curves else ([math.nan] * 2, [math.nan] * 2))
        reach = "never" if math.isinf(r["reach_units"]) else f"{r['reach_units']:.2f}"
        print(f"| {r['strategy']} | {reach} | {interval_text(np.asarray(interval))} | "
              f"{'-' if math.isnan(ratio) else f'{ratio:.2f}'} | "
              f"{interval_text(np.asarray(ratio_interval))} | "
              f"{r['share_reaching']:.0%} | "
              + " | ".join(f"{r[k]:.4f}" for k in list(r)[3:]) + " |")
    if args.plateau:
        print_plateau(args, space, table, nearest, grid)
    if args.warm_start:
        print_warm_start(args, space, table, nearest, grid)
    if args.csv:
        import pandas as pd

        pd.DataFrame(points, columns=["strategy", "replay", "budget_units", "final_accuracy"]) \
            .to_csv(args.csv, index=False)
    if args.plot:
        shown = args.plot_strategies or args.strategies
        plot({name: curves[name] for name in shown if name in curves}, units, best, target,
             args.plot)
    return 0


def print_plateau(args, space: SearchSpace, table: Table, nearest: "Nearest",
                  grid: np.ndarray) -> None:
    """What the plateau rule saves and costs: per strategy and N, over the same replays (same
    seeds, so the same trials), the share of --budget spent when it stops (the full budget when
    it never does) and the final-horizon accuracy of the pick then, against the pick at the
    full budget."""
    from search.plateau import PlateauStop

    print(f"\n| strategy | plateau_trials (gain {args.plateau_gain:g}) | replays it stopped | "
          f"budget used, median | accuracy lost, median (pt) | p90 (pt) |")
    print("|---|---|---|---|---|---|")
    for name in args.strategies:
        for n in args.plateau:
            used, lost, stopped = [], [], 0
            for seed in range(args.replays):
                rule = PlateauStop(METRIC, "max", n, args.plateau_gain)
                curve, at = replay(STRATEGIES[name], space, table, nearest, seed, grid[-1],
                                   args.concurrency, grid, plateau=rule)
                full = curve[-1]
                if math.isfinite(at):
                    stopped += 1
                    i = max(int(np.searchsorted(grid, at, side="right")) - 1, 0)
                    used.append(at / grid[-1])
                    lost.append(100 * (full - curve[i]))
                else:
                    used.append(1.0)
                    lost.append(0.0)
            print(f"| {name} | {n} | {stopped / args.replays:.0%} | {np.median(used):.0%} | "
                  f"{np.median(lost):.2f} | {np.percentile(lost, 90):.2f} |")


def first_reaching(trace: list, value: float) -> float:
    """Trials started when the pick first reached ``value`` (inf: never)."""
    return next((n for n, v in trace if v >= value - 1e-12), math.inf)


def print_warm_start(args, space: SearchSpace, table: Table, nearest: "Nearest",
                     grid: np.ndarray) -> None:
    """Warm start replayed with the real search.warm_start.frozen_trial and an Optuna study
    seeded as ``--warm-start`` seeds it: per strategy, over the replays, the trials a warm search
    needs to reach the final pick of a cold search of the same seed, against the cold one's."""
    import dataclasses

    import optuna

    from search.experiment_folder import COMPLETED, FAILED, STOPPED_EARLY
    from search.warm_start import frozen_trial

    lr = space.params["lr"]
    narrow = dataclasses.replace(space, params={**space.params,
                                                "lr": dataclasses.replace(lr, high=3e-3)})
    status = {optuna.trial.TrialState.COMPLETE: COMPLETED,
              optuna.trial.TrialState.PRUNED: STOPPED_EARLY, optuna.trial.TrialState.FAIL: FAILED}
    print("\n| strategy | warm / cold trials to the cold search's final pick, median | p75 | "
          "warm searches within half the cold trials | warm searches reaching it | "
          "cold trials, median |")
    print("|---|---|---|---|---|---|")
    for name in args.strategies:
        strategy = STRATEGIES[name]
        ratios, cold_n = [], []
        for seed in range(args.replays):
            cold: list = []
            replay(strategy, space, table, nearest, seed, grid[-1], args.concurrency, grid,
                   trace=cold)
            target = cold[-1][1]
            earlier = optuna.storages.InMemoryStorage()
            replay(strategy, narrow, table, nearest, 10_000 + seed, grid[-1] / 2,
                   args.concurrency, grid, storage=earlier)
            done = optuna.load_study(study_name="fer-search", storage=earlier).trials
            seeded = optuna.storages.InMemoryStorage()
            study = optuna.create_study(study_name="fer-search", storage=seeded,
                                        direction="maximize")
            study.add_trials([frozen_trial(space, {**space.fixed(), **t.params}, status[t.state],
                                           t.value, dict(t.intermediate_values))
                              for t in done if t.state in status])
            complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
            first = [max(complete, key=lambda t: t.value).params] if complete else None
            warm: list = []
            replay(strategy, space, table, nearest, seed, grid[-1], args.concurrency, grid,
                   storage=seeded, first=first, trace=warm)
            cold_n.append(first_reaching(cold, target))
            ratios.append(first_reaching(warm, target) / cold_n[-1])
        finite = [r for r in ratios if math.isfinite(r)]
        # Bimodal: the earlier winner is the cold search's final pick (a ratio near 0), or the
        # warm search draws what the cold one drew, one trial later (near 1); the median flips.
        print(f"| {name} | {np.median(ratios):.2f} | "
              f"{np.percentile(ratios, 75, method='higher'):.2f} | "
              f"{np.mean([r <= 0.5 for r in ratios]):.0%} | "
              f"{len(finite) / len(ratios):.0%} | {np.median(cold_n):.0f} |")


def log_fit_to_horizon(accuracy: np.ndarray, epochs: int, horizon: int) -> np.ndarray:
    """Each curve's first ``epochs`` accuracies fitted by least squares as a + b log(epoch) and
    read at ``horizon``: a parameter-free learning-curve extrapolation (needs 2 epochs)."""
    x = np.log(np.arange(1, epochs + 1))
    design = np.stack([np.ones_like(x), x], axis=1)
    coef = np.linalg.lstsq(design, accuracy[:, :epochs].T, rcond=None)[0]
    return coef[0] + coef[1] * math.log(horizon)


def print_rank_settling(table: Table) -> None:
    """Spearman correlation, over the table's configs, of each epoch's PublicTest accuracy (and
    loss, and the accuracy extrapolated to the horizon) with the final epoch's accuracy: where a
    rung can judge what the horizon delivers, and whether extrapolating helps it."""
    from scipy.stats import spearmanr

    print("\n| epoch | Spearman(accuracy at epoch, final accuracy) | Spearman(-loss at epoch, final "
          "accuracy) | Spearman(accuracy extrapolated to the horizon, final accuracy) |")
    print("|---|---|---|---|")
    for e in range(table.horizon - 1):
        acc = spearmanr(table.accuracy[:, e], table.final).statistic
        loss = spearmanr(-table.loss[:, e], table.final).statistic
        fitted = "-"
        if e >= 1:
            guess = log_fit_to_horizon(table.accuracy, e + 1, table.horizon)
            fitted = f"{spearmanr(guess, table.final).statistic:.2f}"
        print(f"| {e + 1} | {acc:.2f} | {loss:.2f} | {fitted} |")


def plot(curves: dict, units: np.ndarray, best: float, target: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, runs in curves.items():
        q1, med, q3 = np.nanpercentile(runs, [25, 50, 75], axis=0)
        line, = ax.plot(units, med, label=name, lw=2 if name in ("random", "tpe+asha") else 1.2,
                        ls=":" if STRATEGIES[name].reference else "-")
        ax.fill_between(units, q1, q3, color=line.get_color(), alpha=0.08)
    ax.axhline(best, color="k", lw=0.8, ls=":", label="table's best")
    ax.axhline(target, color="k", lw=0.8, ls="--", label="best - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("budget (full-horizon trainings' worth of simulated time)")
    ax.set_ylabel("final-horizon PublicTest accuracy of the pick")
    ax.set_title("Anytime performance over the FER table (median, quartiles shaded)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
