"""Reliability end to end: SIGKILL the driver mid-search, --resume it, and check nothing that
finished is re-run; a NaN trial is recorded as failed while the search completes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from search.experiment_folder import ExperimentFolder
from tests.proc_utils import descendants, kill_all

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SPACE = """
name: resume
search: {sampler: tpe, seed: 1, num_samples: 3, max_concurrent: 1,
         asha: {grace_period: 1, reduction_factor: 2}}
retrain: {epochs: 1, seeds: [0], tta: false, onnx: false}
params:
  backbone: resnet10t
  epochs: 2
  batch_size: 64
  lr: {loguniform: [1.0e-4, 3.0e-2]}
  dropout: {uniform: [0.0, 0.5]}
"""


def finished_trials(exp: Path) -> list:
    if not (exp / "optuna-journal.log").exists():
        return []
    try:
        study = ExperimentFolder(exp).load_study()
    except Exception:
        return []
    return [t for t in study.trials if t.state.is_finished()]


def trial_epochs(exp: Path) -> dict[str, int]:
    out = {}
    for progress in exp.glob("t[0-9]*-*/progress.csv"):
        rows = pd.read_csv(progress, dtype={"trial_id": str})
        out[str(rows.trial_id.iloc[0])] = len(rows)
    return out


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "resume.yaml"
    path.write_text(SPACE)
    return path


@pytest.mark.xdist_group("test_sigkill_driver_then_resume")  # its own search: any worker
def test_sigkill_driver_then_resume(space_file, tmp_path, tiny_csv):
    out = tmp_path / "results"
    exp = out / "killed"
    cmd = [sys.executable, "-m", "search.run", str(space_file), "--data", str(tiny_csv),
           "--output", str(out), "--name", "killed", "--verbose", "0"]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    started: set[int] = set()
    try:
        deadline = time.time() + 400
        while len(finished_trials(exp)) < 2:
            started |= descendants(proc.pid)
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no two trials finished in time"
            time.sleep(1)
        started |= descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_all(started | descendants(proc.pid))  # Ray's daemons outlive a SIGKILLed driver
        if proc.poll() is None:
            proc.kill()
        log.close()
    time.sleep(2)
    assert not (exp / "summary.json").exists()
    before = trial_epochs(exp)
    done_before = {t.number for t in finished_trials(exp)}

    resumed = subprocess.run([sys.executable, "-m", "search.run", "--resume", str(exp),
                              "--verbose", "0"], cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    last = resumed.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)", last), last

    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 3, trials[["trial_id", "status", "epochs"]]
    after = trial_epochs(exp)
    finished_ids = [tid for tid, n in before.items()
                    if trials.set_index("trial_id").loc[tid, "status"] in ("completed", "stopped_early")]
    for tid in finished_ids:  # a finished trial is not re-run: its epochs are unchanged
        assert after[tid] == before[tid], (tid, before[tid], after[tid])
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials_run"] == 3
    for name in ("best.yaml", "metrics.json", "model/model.safetensors"):
        assert (exp / name).exists()
    assert not list(exp.rglob("*.onnx"))  # retrain.onnx: false
    # The study kept its history: the trials finished before the kill are still there.
    numbers = {t.number for t in finished_trials(exp)}
    assert done_before <= numbers


def _run_in_process(space_text: str, tmp_path: Path, name: str, data, trial_fn) -> dict:
    """The real search, in this process, with its trial function swapped (fault injection lives
    in tests/faults.py, not in the trainer)."""
    import ray

    from search.experiment import run_experiment
    from search.space import load_space

    path = tmp_path / f"{name}.yaml"
    path.write_text(space_text)
    try:
        return run_experiment(load_space(path), data, tmp_path / name, num_cpus=2, verbose=0,
                              trial_fn=trial_fn)
    finally:
        ray.shutdown()


@pytest.mark.xdist_group("test_nan_trial_is_marked_failed_and_search_completes")  # its own search: any worker
def test_nan_trial_is_marked_failed_and_search_completes(tmp_path, tiny_data):
    from tests.faults import trial_diverging_when_seed_is_1

    outcome = _run_in_process("""
search: {sampler: random, seed: 0, num_samples: 4, asha: false}
retrain: {epochs: 1, tta: false, onnx: false}
params: {backbone: resnet10t, epochs: 1, batch_size: 64, seed: {choice: [0, 1]}}
""", tmp_path, "nan", tiny_data, trial_diverging_when_seed_is_1)
    trials = ExperimentFolder(tmp_path / "nan").read_trials()
    assert len(trials) == 4
    diverged, healthy = trials[trials["config/seed"] == 1], trials[trials["config/seed"] == 0]
    assert len(diverged) >= 1 and len(healthy) >= 1, trials[["trial_id", "config/seed"]]
    assert (diverged.status == "failed").all()
    assert diverged.error.str.contains("NonFiniteLossError").all()
    assert (healthy.status == "completed").all()
    assert outcome["summary"]["trials_failed"] == len(diverged)
    assert outcome["metrics"]["n"] == len(tiny_data.private_test)
    # The study knows them as FAIL, the others as COMPLETE.
    states = sorted(t.state.name for t in ExperimentFolder(tmp_path / "nan").load_study().trials)
    assert states == sorted(["FAIL"] * len(diverged) + ["COMPLETE"] * len(healthy))


def test_all_trials_failing_exits_3_with_a_message(tmp_path, tiny_csv, monkeypatch, capsys):
    import functools

    import search.experiment
    from search.run import main
    from tests.faults import trial_always_diverging

    monkeypatch.setattr(search.experiment, "run_experiment", functools.partial(
        search.experiment.run_experiment, trial_fn=trial_always_diverging))
    space = tmp_path / "allnan.yaml"
    space.write_text("""
search: {num_samples: 1, asha: false}
params: {backbone: resnet10t, epochs: 1, batch_size: 64, lr: {loguniform: [1.0e-4, 1.0e-2]}}
""")
    code = main([str(space), "--data", str(tiny_csv), "--output", str(tmp_path),
                 "--name", "allnan", "--verbose", "0", "--cpus", "2"])
    err = capsys.readouterr().err
    assert code == 3, err[-2000:]
    assert "all 1 trial failed" in err and "NonFiniteLossError" in err
    assert "Traceback" not in err.split("error: all")[-1]


@pytest.mark.xdist_group("test_killed_trial_worker_is_retried_and_search_completes")  # its own search: any worker
def test_killed_trial_worker_is_retried_and_search_completes(tmp_path, tiny_csv):
    """SIGKILL the process running a trial after its first epoch: with max_failures 1, Tune
    restarts the trial from its checkpoint, the trial completes, its epochs continue after the
    checkpointed one (none is trained twice), and the search finishes."""
    from tests.proc_utils import cmdline

    space = tmp_path / "kill.yaml"
    space.write_text("""
search: {sampler: random, seed: 0, num_samples: 1, asha: false, max_failures: 1}
retrain: {epochs: 1, tta: false, onnx: false}
params: {backbone: resnet10t, epochs: 3, batch_size: 128, lr: {loguniform: [1.0e-3, 3.0e-3]}}
""")
    exp = tmp_path / "kill"
    log = open(tmp_path / "kill.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "search.run", str(space), "--data",
                             str(tiny_csv), "--output", str(tmp_path), "--name", "kill",
                             "--verbose", "0"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    killed, killed_after = None, {}
    started: set[int] = set()
    try:
        deadline = time.time() + 300
        while killed is None:
            assert proc.poll() is None, (tmp_path / "kill.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial reported an epoch in time"
            started |= descendants(proc.pid)
            # One trial runs at a time (max_concurrent 1): the worker is the running trial's.
            running = {p.parent: len(pd.read_csv(p, dtype={"trial_id": str})) for p in exp.glob("t[0-9]*-*/progress.csv")
                       if p.stat().st_size}
            running = {d: n for d, n in running.items() if 1 <= n < 3}
            if running:
                workers = [pid for pid in descendants(proc.pid) if "ImplicitFunc" in cmdline(pid)]
                if workers:
                    killed = workers[0]
                    os.kill(killed, signal.SIGKILL)
                    killed_after = running
            time.sleep(0.2)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(started | descendants(proc.pid))
        log.close()
    output = (tmp_path / "kill.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert re.search(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)\s*$", output), output[-1000:]
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 1
    assert (trials.status == "completed").all(), trials[["trial_id", "status", "error"]]
    assert (trials.epochs == 3).all()
    # The killed trial was restored from a checkpoint: Tune's restart count shows it, and the
    # fit epochs it reported after the restart continue where the checkpoint left off.
    (folder, _), = killed_after.items()
    progress = pd.read_csv(folder / "progress.csv", dtype={"trial_id": str})
    restarts = progress.index[progress["iterations_since_restore"] == 1].tolist()
    assert len(restarts) == 2, progress[["epoch", "training_iteration", "iterations_since_restore"]]
    before, after = progress.iloc[:restarts[1]], progress.iloc[restarts[1]:]
    assert list(after["epoch"]) == list(range(int(before["epoch"].max()) + 1, 4)), progress
    assert int(after["epoch"].iloc[0]) > 1
    assert (exp / "summary.json").exists()


class _Planted:
    """A pickle that, when loaded, leaves a marker file: proof it was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("how", ["group-writable state file", "world-writable folder",
                                 "someone else's state file", "symlinked state file"])
def test_resume_never_unpickles_a_folder_others_could_write(tmp_path, capsys, how):
    """A planted tuner.pkl in a folder another user could have written: refused before Ray
    starts, with one line naming it; the pickle is never loaded and nothing is changed."""
    import pickle

    from search.run import main

    exp = tmp_path / "someone-else"
    exp.mkdir(mode=0o755)
    (exp / "run.json").write_text(json.dumps({"overrides": {}, "data": str(tmp_path / "x.csv")}))
    (exp / "space.yaml").write_text("name: x\nparams: {lr: 0.001}\n")
    marker = tmp_path / "UNPICKLED"
    state = exp / "tuner.pkl"
    state.write_bytes(pickle.dumps(_Planted(marker)))
    os.chmod(state, 0o644)
    if how == "group-writable state file":
        os.chmod(state, 0o664)
    elif how == "world-writable folder":
        os.chmod(exp, 0o777)
    elif how == "someone else's state file":
        if os.getuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(state, 65534, 65534)
    else:
        real = tmp_path / "elsewhere.pkl"
        state.rename(real)
        state.symlink_to(real)
    before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    assert main(["--resume", str(exp)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume unpickles" in err, err
    assert (str(exp) if how == "world-writable folder" else "tuner.pkl") in err
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()} == before


def test_resume_trusts_a_folder_only_its_owner_can_write(tmp_path):
    from search.resume_trust import untrusted_state

    exp = tmp_path / "mine"
    (exp / "t001-abcd1234_default").mkdir(parents=True)
    for p in (exp / "tuner.pkl", exp / "searcher-state-1.pkl", exp / "experiment_state-1.json",
              exp / "t001-abcd1234_default" / "params.pkl"):
        p.write_bytes(b"x")
        os.chmod(p, 0o644)
    os.chmod(exp, 0o755)
    os.chmod(exp / "t001-abcd1234_default", 0o755)  # whatever the umask made it
    assert untrusted_state(exp) == []
    os.chmod(exp / "t001-abcd1234_default" / "params.pkl", 0o646)  # a trial's pickle counts too
    assert [p.split(": ")[0] for p in untrusted_state(exp)] == [
        str(exp / "t001-abcd1234_default" / "params.pkl")]
