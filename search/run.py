"""``python -m search.run SPACE.yaml``: search, retrain the winner, report PrivateTest once.

Everything that can be wrong with the input (space file, data file, output folder) is checked
before Ray starts, and reported in one line with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from fer_models.audit import drop_cross_split_duplicates
from fer_models.cli import (DATA_ENV, DEFAULT_DATA, EXIT_BAD_INPUT, error_line, prog,
                            resolve_data_path)
from fer_models.data import DataError, load_fer2013
from fer_models.models import ModelConfigError
from fer_models.textfiles import InputFileError, require_regular_file
from fer_models.weights import CACHE_ENV, WeightsError

from .default_baseline import describe_comparison
from .experiment_folder import ExperimentFolder
from .overrides import OVERRIDES, RETRAIN_OVERRIDES, apply_overrides
from .resume_trust import UntrustedFolder, check_resume_trust
from .space import SpaceError, load_space
from .warm_start import WarmStartError, inherited_rows, load_warm_start
from .weights import require_cached

EXIT_ALL_FAILED = 3   # nothing to retrain: every trial failed or finished no epoch
EXIT_UNTESTED_LIBRARY = 4  # an installed Ray / Optuna changed what search.private_api relies on


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


# What a search reads from each split; a file lacking one stops before Ray starts.
SEARCH_NEEDS = {"Training": "training every trial",
                "PublicTest": "validating and ranking the trials",
                "PrivateTest": "the final report, which scores the winner on it once"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog("search.run"),
        description="Hyperparameter search for FER2013 with Ray Tune, Optuna and ASHA: runs the "
                    "trials of SPACE (PublicTest is the validation split), retrains the best "
                    "configuration and evaluates it once on PrivateTest.",
        epilog="Examples:\n"
               "  python -m search.run spaces/cpu.yaml --data data/fer2013.csv\n"
               "  python -m search.run spaces/inception.yaml --address auto   # on a Ray cluster\n"
               "  tensorboard --logdir results/            # watch trials while they run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", nargs="?", help="search-space YAML file (see spaces/README.md)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted experiment in DIR; "
                   "finished trials are kept; the same space, data and overrides are used. It "
                   "unpickles Ray Tune's state from DIR, so DIR and its state files must be "
                   "yours and not writable by others (refused otherwise)")
    p.add_argument("--warm-start", nargs="+", metavar="DIR",
                   help="start a new search from the finished searches in DIR...: their trials "
                        "that fit this space enter the Optuna study with their results, and "
                        "the earlier winner runs first (nothing in DIR is changed)")
    p.add_argument("--retrain-only", action="store_true",
                   help="with --resume: skip the finished search, retrain its best trial and "
                        "report; the earlier retrain is kept in DIR/earlier-retrains/<n>/ and "
                        "summary.json counts PrivateTest's looks")
    p.add_argument("--data", help=f"fer2013.csv(.gz) or image-folder root; default: the space's "
                                  f"'data', else ${DATA_ENV}, else {DEFAULT_DATA}")
    p.add_argument("--output", default="results", help="results root folder (default: results/)")
    p.add_argument("--name", help="experiment name (default: <space name>-<timestamp>)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides the space)")
    p.add_argument("--seed", type=int, help="sampler seed (overrides the space)")
    p.add_argument("--address", help="Ray cluster address ('auto' on a cluster node); default: "
                                     "start a local Ray")
    p.add_argument("--cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument("--max-epochs", type=int, help="cap every trial's epochs (quick runs)")
    p.add_argument("--retrain-epochs", type=int, help="override retrain.epochs")
    p.add_argument("--top-k", type=int, help="override retrain.top_k: retrain the K best distinct "
                   "configs and score their ensemble beside each one")
    p.add_argument("--drop-duplicates", action="store_true", default=None,
                   help="set search.drop_duplicates: train on no face that is pixel-identical to "
                        "a PublicTest or PrivateTest face (see python -m fer_models.audit)")
    p.add_argument("--weights-cache", metavar="DIR", help="Hugging Face hub cache holding the "
                   "ImageNet weights of a space with pretrained: true (default: $HF_HUB_CACHE, "
                   "else $HF_HOME/hub, else ~/.cache/huggingface/hub; fill it with python -m "
                   "search.weights SPACE.yaml); trials read it offline")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0: quiet; 1 (default): one line per trial event, a progress line, the "
                        "retrain's epochs; 2: also Ray Tune's own output")
    return p


def data_path_of(cli: str | None, space) -> Path:
    """--data, else the space's ``data``, else $FER2013_CSV, else data/fer2013.csv."""
    candidates = []
    if space.data:
        p = Path(space.data)
        # A relative 'data' in a space file is tried from the current folder, then beside the file.
        candidates.append((str(p if p.is_absolute() or p.exists() else space.path.parent / p),
                           f"'data' in {space.path}"))
    return resolve_data_path(cli, candidates)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    # 1. Everything that can be wrong with the input, before Ray or any compute starts.
    try:
        space, data_path, experiment, inherited = _inputs(args)
        cache = _use_weights_cache(args, experiment)
        require_cached(space, cache)  # ImageNet weights: trials never download, so they must be here
        print(f"Loading {data_path} ...", flush=True)
        data = load_fer2013(data_path)
        data.require(SEARCH_NEEDS)
    except (SpaceError, DataError, ModelConfigError, UsageError, InputFileError,
            WeightsError, WarmStartError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    _set_ray_output()
    untested = _untested_library()
    if untested:  # a search that would run, but differently from the one this project tests
        print(untested, file=sys.stderr)
        return EXIT_UNTESTED_LIBRARY
    data = _search_data(space, data)
    if not args.resume:
        _record_run(experiment, space, data_path, args, argv)
        if any(got.rows for got in inherited):
            inherited_rows(inherited).to_csv(ExperimentFolder(experiment).inherited_csv,
                                             index=False)
    for got in inherited:
        print(got.describe(), flush=True)

    # 2. The search.
    from .experiment import ResourceError, run_experiment
    from .finish import AllTrialsFailed

    try:
        outcome = run_experiment(space, data, experiment, address=args.address,
                                 num_cpus=args.cpus, verbose=args.verbose,
                                 command=_command_line(argv), started=started,
                                 resume=bool(args.resume), retrain_only=args.retrain_only,
                                 warm_start=inherited)
    except AllTrialsFailed as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_ALL_FAILED
    except ResourceError as e:  # found once Ray is up, before any trial starts
        if not args.resume:  # only this invocation's run.json and space.yaml are there
            _discard_unstarted(experiment)
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        import ray

        # Workers' output reaches the driver asynchronously; after shutdown none can land below
        # the result lines (the last line stays the PrivateTest accuracy).
        ray.shutdown()
    _print_outcome(experiment, outcome["summary"], outcome["metrics"])
    return 0


def _set_ray_output() -> None:
    """Ray's console settings for this driver (read when ray is first imported, after this)."""
    # Ray's log deduplication masks the numbers in a line: the epoch lines of the retrain's seeds,
    # trained side by side, would read as repeats and all but one be hidden.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray colours the "(retrain_one pid=...)" prefix of workers' lines: escape codes in a log file.
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def _untested_library() -> str | None:
    """The error line when an installed Ray / Optuna / tensorboardX / torch breaks an assumption
    of search.private_api; None when every one holds."""
    from .private_api import check as check_private_api

    changed = check_private_api()
    if not changed:
        return None
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return f"error: {changed[0]}{more}; install the tested versions (pyproject.toml)"


def _search_data(space, data):
    """The data the search and the retrain use (without the duplicates, with drop_duplicates),
    its split sizes printed."""
    if space.search.drop_duplicates:
        data, dropped = drop_cross_split_duplicates(data)
        print(f"dropped faces that also appear in a held-out split: Training {dropped['Training']},"
              f" PublicTest {dropped['PublicTest']} (PrivateTest unchanged)", flush=True)
    print(f"data: Training {len(data.train)}, PublicTest {len(data.public_test)}, "
          f"PrivateTest {len(data.private_test)} (held out until the end)", flush=True)
    return data


def _inputs(args):
    """(space, data path, experiment folder, warm-start inputs) of this command, every input
    checked; raises the input errors main turns into one line and exit 2."""
    _check_numbers(args)
    if args.resume:
        if args.warm_start:
            raise UsageError("--warm-start starts a new search and --resume continues one: "
                             "give one of them")
        return (*_prepare_resume(args), [])
    if not args.space:
        raise UsageError("give a SPACE.yaml file (or --resume DIR); see --help")
    if args.retrain_only:
        raise UsageError("--retrain-only needs --resume DIR")
    space = load_space(args.space)
    apply_overrides(space, vars(args))
    data_path = data_path_of(args.data, space)
    output = _output_folder(args.output)
    given = args.name is not None
    name = args.name if given else f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}"
    _check_name(name, "--name" if given else f"name in {space.path}")
    experiment = output / name
    if experiment.exists() and not experiment.is_dir():
        raise UsageError(f"{experiment} exists and is not a folder; choose another --name")
    if experiment.exists() and any(experiment.iterdir()):
        raise UsageError(f"{experiment} already exists and is not empty; choose another "
                         "--name, or continue it with --resume (results there are kept)")
    _check_writable(output)
    inherited = load_warm_start(args.warm_start, space, data_path) if args.warm_start else []
    return space, data_path, experiment, inherited


def _print_outcome(experiment: Path, summary: dict, metrics: dict) -> None:
    """The last lines, below hundreds of retrain lines: the winner and what it beat, where the
    outputs are, then the PrivateTest figures; the very last is the plain one (scripts read it)."""
    if summary.get("best_trial"):
        print(f"winner: trial {summary['best_trial']}; "
              f"{describe_comparison(summary.get('vs_default'))}", flush=True)
    ensemble = ", ensemble/" if "ensemble" in metrics else ""
    print(f"outputs in {experiment}: model/ (seed {metrics['seed']}){ensemble}, best.yaml, "
          "summary.json, trials.csv, report.md", flush=True)
    if "tta" in metrics:
        print(f"PrivateTest accuracy with ten-crop TTA: {metrics['tta']['accuracy']:.4f}", flush=True)
    if "ensemble" in metrics:
        ens = metrics["ensemble"]
        tta = f", with TTA {ens['tta']['accuracy']:.4f}" if "tta" in ens else ""
        print(f"PrivateTest accuracy of the top-{ens['k']} ensemble: {ens['accuracy']:.4f}{tta} "
              f"(members: " + ", ".join(f"{m['accuracy']:.4f}" for m in ens["members"]) + ")",
              flush=True)
    seeds = [s["seed"] for s in metrics.get("per_seed", [])]
    if len(seeds) > 1:  # the figure the results tables report: mean +- sd over the seeds
        print(f"PrivateTest accuracy over retrain seeds {', '.join(map(str, seeds))}: "
              f"{metrics['accuracy_mean']:.4f} +- {metrics['accuracy_sd']:.4f}", flush=True)
    print(f"PrivateTest accuracy: {metrics['accuracy']:.4f} (n={metrics['n']})", flush=True)


def _check_numbers(args) -> None:
    for key in ("num_samples", "max_epochs", "retrain_epochs", "top_k", "cpus"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {value}")


def _record_run(experiment: Path, space, data_path: Path, args, argv) -> None:
    folder = ExperimentFolder(experiment)
    experiment.mkdir(parents=True, exist_ok=True)
    folder.space_yaml.write_text(space.path.read_text())  # the inputs, beside results
    record = {"space_file": str(space.path), "data": str(Path(data_path).resolve()),
              "overrides": {k: getattr(args, k) for k in OVERRIDES},
              "address": args.address, "weights_cache": os.environ.get(CACHE_ENV) or None,
              "warm_start": [str(Path(d).resolve()) for d in args.warm_start or []],
              "command": _command_line(argv)}
    folder.run_json.write_text(json.dumps(record, indent=2))


def _use_weights_cache(args, experiment: Path) -> Path | None:
    """--weights-cache (or, on --resume, the one the run started with) becomes $HF_HUB_CACHE:
    the driver checks it and Ray hands it to every trial (search.experiment.start_ray).
    Returns that folder, or None when the environment decides."""
    cache = args.weights_cache
    if cache is None and args.resume:
        cache = ExperimentFolder(experiment).read_run().get("weights_cache")
    if not cache:
        return None
    try:
        resolved = Path(cache).expanduser().resolve()
    except RuntimeError as e:  # ~user of no user on this machine
        raise UsageError(f"--weights-cache {cache}: {e}") from None
    os.environ[CACHE_ENV] = str(resolved)
    return resolved


def _discard_unstarted(experiment: Path) -> None:
    """Remove a new experiment folder that holds only what :func:`_record_run` wrote, so the
    same --name can be used again once the input is fixed."""
    folder = ExperimentFolder(experiment)
    if {p.name for p in experiment.iterdir()} <= {folder.RUN, folder.SPACE}:
        shutil.rmtree(experiment)


def _prepare_resume(args):
    experiment = Path(args.resume).resolve()
    folder = ExperimentFolder(experiment)
    run_file = folder.run_json
    if not run_file.is_file():
        raise UsageError(f"{experiment} is not an experiment folder of this tool "
                         f"(no {folder.RUN})")
    if args.space:
        raise UsageError("--resume takes the space from the experiment folder; drop SPACE")
    try:
        check_resume_trust(experiment)
    except UntrustedFolder as e:
        raise UsageError(str(e)) from None
    record = folder.read_run()
    _check_run_record(record, run_file)
    space = load_space(folder.space_yaml, upgrade_earlier=True)
    apply_overrides(space, record["overrides"])
    # A resumed search keeps its settings; a new retrain of it may change the retrain's.
    given = [k for k in OVERRIDES if getattr(args, k) is not None]
    fixed = [k for k in given if k not in RETRAIN_OVERRIDES or not args.retrain_only]
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise UsageError(f"--resume continues with the settings in {run_file}; drop {flags} "
                         "(--retrain-epochs and --top-k are allowed with --retrain-only)")
    apply_overrides(space, {k: getattr(args, k) for k in given})
    data_path = Path(args.data) if args.data else Path(record["data"])
    if not data_path.exists():
        raise DataError(f"{data_path} (the data this experiment was started with) does not "
                        "exist; pass --data PATH")
    _check_journal(folder)
    if args.retrain_only and not folder.trials_csv.is_file():
        raise UsageError(f"{experiment}: its search has not finished ({folder.TRIALS} is written "
                         "when it does): continue it with --resume DIR, without --retrain-only")
    if folder.is_finished() and not args.retrain_only:
        raise UsageError(f"{experiment} already finished ({folder.SUMMARY} exists); "
                         "use --retrain-only to retrain again")
    return space, data_path, experiment


def _check_journal(folder: ExperimentFolder) -> None:
    """The resumed search's Optuna study reads back, here rather than once Ray is up."""
    if not folder.journal.exists():  # the driver died before the study was made
        return
    try:
        if require_regular_file(folder.journal, error=UsageError).st_size == 0:
            return  # created, but the driver died before the study was written
        folder.load_study()
    except UsageError:
        raise
    except Exception as e:  # whatever a damaged journal makes Optuna raise
        raise UsageError(f"{folder.journal}: the Optuna study cannot be read "
                         f"({type(e).__name__}: {e}); the search cannot be resumed") from None


def _check_run_record(record: dict, run_file: Path) -> None:
    """run.json as this tool writes it: what --resume reads from it, with the types it needs
    (the override values then meet the space's own rules in apply_overrides)."""
    missing = [k for k in ("overrides", "data") if k not in record]
    if missing:
        raise UsageError(f"{run_file}: lacks {', '.join(missing)}; it was not written by this tool "
                         "or was edited")

    def bad(what: str) -> UsageError:
        return UsageError(f"{run_file}: {what}; it was not written by this tool or was edited")

    if not isinstance(record["data"], str) or not record["data"]:
        raise bad("'data' is not a file path")
    overrides = record["overrides"]
    if not isinstance(overrides, dict) or set(overrides) - set(OVERRIDES):
        raise bad(f"'overrides' is not a mapping of {', '.join(OVERRIDES)}")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "drop_duplicates":
            if not isinstance(value, bool):
                raise bad(f"overrides.{key} is not true, false or null")
        elif isinstance(value, bool) or not isinstance(value, int) or value < (key != "seed"):
            raise bad(f"overrides.{key} is not a {'non-negative' if key == 'seed' else 'positive'} "
                      "integer")
    for key in ("weights_cache", "address"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise bad(f"'{key}' is not text")


def _output_folder(text: str) -> Path:
    """--output as a local folder; a URI (s3://, gs://, ...) is refused, not made a './s3:' folder."""
    if "://" in text:
        raise UsageError(f"--output {text[:80]!r}: a URI; results are written to a local folder "
                         "(on a cluster, the head node's): give a path, and copy it from there")
    return Path(text).resolve()


def _check_name(name: str, where: str) -> None:
    """An experiment name is one folder inside --output: never a path out of it."""
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or len(name) > 200
           or any(not ch.isprintable() for ch in name) or name != name.strip())
    if bad:
        raise UsageError(f"{where}: {name[:80]!r} is not a folder name (no '/', '..', control "
                         "characters or surrounding spaces; at most 200 characters)")


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --output {output}: {e.strerror}") from None


def _command_line(argv) -> str:
    import shlex

    args = sys.argv[1:] if argv is None else argv
    return "python -m search.run " + " ".join(shlex.quote(a) for a in args)


if __name__ == "__main__":
    sys.exit(main())
