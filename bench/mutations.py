"""Break each integrity and trust guard once and see its test fail: a test that still passes with
its guard broken proves nothing.

    .venv/bin/python bench/mutations.py                 # every mutation, a table on stdout
    .venv/bin/python bench/mutations.py --only resume_trust --out bench/mutations.md

Each mutation replaces one snippet of the source (it must occur exactly once) and runs the
guard's tests with pytest, after checking that they pass on the code as it is; the file is put
back (also on Ctrl-C). A mutation is *caught* when a test fails (pytest exit 1); a run that
errors, times out or cannot collect is reported as such, never as caught. Run it from a clean working tree: the files are edited in place while it runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    guard: str      # what the code promises
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation("retrain_selects_on_privatetest",
             "the retrain's keep_best / EMA / early stopping never see PrivateTest",
             "search/retrain.py",
             "result = fit(cfg, data, on_epoch=",
             "result = fit(cfg, FER2013(data.train, data.private_test, None, data.source), on_epoch=",
             ("tests/test_integrity.py",)),
    Mutation("trials_see_privatetest",
             "the driver hands search trials no PrivateTest",
             "search/experiment.py",
             "trial_fn, data=data.without_private_test(),",
             "trial_fn, data=data,",
             ("tests/test_search_e2e.py::test_private_test_never_reached_a_trial",)),
    Mutation("trial_accepts_privatetest",
             "a trial handed PrivateTest refuses before training",
             "search/trainable.py",
             "    if data.private_test is not None:  # the driver must strip it",
             "    if False:  # the driver must strip it",
             ("tests/test_search_e2e.py::test_trainable_refuses_private_test",)),
    Mutation("resume_trusts_anyones_folder",
             "--resume unpickles only state files the user alone could have written",
             "search/resume_trust.py",
             "    st = path.lstat()\n",
             "    return None\n    st = path.lstat()\n",
             ("tests/test_resume.py::test_resume_never_unpickles_a_folder_others_could_write",)),
    Mutation("name_leaves_output",
             "--name and a space's name stay one folder inside --output",
             "search/run.py",
             'bad = (not name or name in (".", "..") or "/" in name or "\\\\" in name or len(name) > 200',
             'bad = (not name or len(name) > 200',
             ("tests/test_space.py::test_a_name_never_places_a_run_outside_output",
              "tests/test_space.py::test_a_space_name_that_is_a_path_is_refused")),
    Mutation("retrain_only_overwrites",
             "--retrain-only keeps every earlier retrain's outputs",
             "search/experiment_folder.py",
             "        for path in outputs:\n            path.rename(target / path.name)\n",
             "",
             ("tests/test_search_e2e.py::test_retrain_only_keeps_the_earlier_retrain_and_counts_privatetest_looks",)),
    Mutation("edited_metrics_pass",
             "an edited metrics.json is refused with one line before the report rewrites anything",
             "search/result_records.py",
             "    _check(record, METRICS, path)",
             "    return",
             ("tests/test_result_records.py",)),
    Mutation("edited_summary_passes",
             "an edited summary.json is refused with one line before the report rewrites anything",
             "search/result_records.py",
             "    _check(record, SUMMARY, path)",
             "    return",
             ("tests/test_result_records.py",)),
    Mutation("run_record_unchecked",
             "--resume refuses a run.json of the wrong shape in one line, before Ray starts",
             "search/run.py",
             "    _check_run_record(record, run_file)\n",
             "",
             ("tests/test_first_contact.py::test_a_corrupt_run_json_stops_resume_with_exit_2",)),
    Mutation("private_api_unchecked",
             "a moved Ray / Optuna private attribute is named before the search starts",
             "search/private_api.py",
             'for attr in ("_trial_info", "_time_attr", "_metric_op", "_mode"):',
             'for attr in ():',
             ("tests/test_private_api.py",)),
    Mutation("yaml_bomb_expands",
             "a YAML alias bomb is refused before it expands",
             "fer_models/textfiles.py",
             "            if values > MAX_YAML_VALUES:",
             "            if values > MAX_YAML_VALUES ** 3:",
             ("tests/test_input_bombs.py",)),
    Mutation("long_error_lines",
             "an error is one line of at most ~600 characters, whatever value it quotes",
             "fer_models/cli.py",
             "    if len(text) > MAX_ERROR_CHARS:",
             "    if False:",
             ("tests/test_input_bombs.py",)),
    Mutation("dropout_bound_widened",
             "each TrainConfig field accepts what it means and nothing else",
             "fer_models/validation.py",
             '"dropout": _unit(open_high=True),',
             '"dropout": Rule("float", 0, 2),',
             ("tests/test_field_bounds.py",)),
    Mutation("retrain_ignores_its_budget",
             "the retrain runs the epochs its time budget fits, not its cap",
             "search/retrain.py",
             "    epochs = budget_epochs(budget, cap, pace)\n",
             "    epochs = cap\n",
             ("tests/test_headline_path.py::test_the_retrain_runs_the_epochs_its_time_budget_fits",)),
    Mutation("study_unnamed_mid_search",
             "the Optuna study names its objectives before its first trial",
             "search/searcher.py",
             "        if self.study is not None:  # set up in __init__",
             "        if False:  # set up in __init__",
             ("tests/test_search_e2e.py::test_the_study_is_named_before_its_first_trial",)),
    Mutation("step_too_fine_passes",
             "a range step too fine to count its points is refused in one line",
             "search/distributions.py",
             "        if step is not None and not (high - low) / step <= MAX_STEPS:  # inf too",
             "        if False:  # inf too",
             ("tests/test_space.py::test_bad_space_exits_2_naming_file_and_key",)),
    Mutation("non_ascii_pixels_pass",
             "pixels separated by non-ASCII spaces are refused, naming the line and the character",
             "fer_models/data.py",
             "    return row.isascii() and all(t.isdigit() for t in row.split())",
             "    return all(t.isdigit() for t in row.split())",
             ("tests/test_data.py::test_non_ascii_space_between_pixels_is_a_data_error",)),
]


def pytest(tests: tuple[str, ...], timeout_s: int) -> tuple[int, str]:
    """pytest's exit code (-1: timed out) and its first FAILED/ERROR line (or its last line).
    FER_REQUIRE_DATA=1: a test that would skip for missing data fails instead, so a skip never
    passes for a caught or a clean run."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "--no-header", "-o", "addopts=", *tests], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "FER_REQUIRE_DATA": "1"})
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout_s} s"
    lines = proc.stdout.splitlines()
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return proc.returncode, (failed[0] if failed else lines[-1] if lines else proc.stderr[-200:])


def stale(m: Mutation) -> list[str]:
    """Why ``m`` could not break its guard: its snippet not in its file exactly once, or a test
    it names that no longer exists ([] when it can)."""
    wrong, found = [], (REPO / m.file).read_text().count(m.old)
    if found != 1:
        wrong.append(f"{m.name}: {m.file} has its snippet {found} times")
    for test in m.tests:
        path, _, name = test.partition("::")
        source = (REPO / path).read_text() if (REPO / path).is_file() else ""
        if not source or name and f"def {name.split('[')[0]}(" not in source:
            wrong.append(f"{m.name}: no {test}")
    return wrong


def run(m: Mutation, timeout_s: int) -> tuple[str, float, str]:
    """(verdict, seconds, first failure): the tests must pass on the code as it is, then fail
    (pytest exit 1: a test failed) with the mutation in place."""
    problems = stale(m)
    if problems:
        return "stale", 0.0, "; ".join(problems)
    path = REPO / m.file
    original = path.read_text()
    started = time.monotonic()
    code, line = pytest(m.tests, timeout_s)
    if code != 0:
        return "tests fail unmutated", time.monotonic() - started, line
    try:
        path.write_text(original.replace(m.old, m.new))
        code, line = pytest(m.tests, timeout_s)
    finally:
        path.write_text(original)
    verdict = {0: "NOT CAUGHT", 1: "caught", -1: "timeout"}.get(code, f"pytest exit {code}")
    return verdict, time.monotonic() - started, line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in MUTATIONS],
                    help="run these mutations only")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per mutation's tests")
    args = ap.parse_args(argv)
    rows = ["| mutation | guard broken | tests run | verdict | first failure | seconds |",
            "| --- | --- | --- | --- | --- | --- |"]
    missed = 0
    for m in MUTATIONS:
        if args.only and m.name not in args.only:
            continue
        verdict, seconds, first = run(m, args.timeout)
        missed += verdict != "caught"
        rows.append(f"| `{m.name}` | {m.guard} | {', '.join(f'`{t}`' for t in m.tests)} | "
                    f"**{verdict}** | `{first[:120]}` | {seconds:.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows) + "\n"
    if args.out:
        Path(args.out).write_text(table)
    print(table)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
