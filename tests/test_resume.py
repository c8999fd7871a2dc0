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

import optuna
import pandas as pd
import pytest

from tests.conftest import data_dir

from search.experiment import STUDY_NAME, open_study_storage
from tests.proc_utils import descendants, kill_all

REPO = Path(__file__).resolve().parents[1]
SMALL = data_dir() / "fer2013-small.csv.gz"  # ../shared/data or $FER_DATA_DIR
pytestmark = pytest.mark.slow

SPACE = """
name: resume
search: {sampler: tpe, seed: 1, num_samples: 4, max_concurrent: 1, scheduler: asha,
         grace_period: 1, reduction_factor: 2}
retrain: {epochs: 1, seeds: [0], tta: false}
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
        study = optuna.load_study(study_name=STUDY_NAME, storage=open_study_storage(exp))
    except Exception:
        return []
    return [t for t in study.trials if t.state.is_finished()]


def trial_epochs(exp: Path) -> dict[str, int]:
    out = {}
    for progress in exp.glob("train_trial_*/progress.csv"):
        rows = pd.read_csv(progress)
        out[str(rows.trial_id.iloc[0])] = len(rows)
    return out


@pytest.fixture
def space_file(tmp_path):
    if not SMALL.exists():
        pytest.skip(f"{SMALL} not found")
    path = tmp_path / "resume.yaml"
    path.write_text(SPACE)
    return path


def test_sigkill_driver_then_resume(space_file, tmp_path):
    out = tmp_path / "results"
    exp = out / "killed"
    cmd = [sys.executable, "-m", "search.run", str(space_file), "--data", str(SMALL),
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

    trials = pd.read_csv(exp / "trials.csv")
    assert len(trials) == 4, trials[["trial_id", "status", "epochs"]]
    after = trial_epochs(exp)
    finished_ids = [tid for tid, n in before.items()
                    if trials.set_index("trial_id").loc[tid, "status"] in ("completed", "stopped_early")]
    for tid in finished_ids:  # a finished trial is not re-run: its epochs are unchanged
        assert after[tid] == before[tid], (tid, before[tid], after[tid])
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials_run"] == 4
    for name in ("best.yaml", "metrics.json", "model/model.safetensors"):
        assert (exp / name).exists()
    # The study kept its history: the trials finished before the kill are still there.
    numbers = {t.number for t in finished_trials(exp)}
    assert done_before <= numbers


def test_nan_trial_is_marked_failed_and_search_completes(tmp_path):
    if not SMALL.exists():
        pytest.skip(f"{SMALL} not found")
    space = tmp_path / "nan.yaml"
    space.write_text("""
search: {sampler: random, seed: 0, num_samples: 3, scheduler: none}
retrain: {epochs: 1, tta: false}
params:
  backbone: resnet10t
  epochs: 1
  batch_size: 64
  fail_with_nan_at_epoch: {choice: [0, 1]}
""")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--data", str(SMALL),
                           "--output", str(tmp_path), "--name", "nan", "--verbose", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    trials = pd.read_csv(tmp_path / "nan" / "trials.csv") if (tmp_path / "nan" / "trials.csv").exists() else None
    nan_trials = trials[trials["config/fail_with_nan_at_epoch"] == 1] if trials is not None else None
    if nan_trials is not None and len(nan_trials) == len(trials):
        assert proc.returncode == 3 and "all 3 trials failed" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nan_trials is not None and len(nan_trials) >= 1, "the seed gave no NaN trial"
    assert (nan_trials.status == "failed").all()
    assert nan_trials.error.str.contains("NonFiniteLossError").all()
    assert (trials[trials["config/fail_with_nan_at_epoch"] == 0].status == "completed").all()


def test_all_trials_failing_exits_3_with_a_message(tmp_path):
    if not SMALL.exists():
        pytest.skip(f"{SMALL} not found")
    space = tmp_path / "allnan.yaml"
    space.write_text("""
search: {num_samples: 1, scheduler: none}
params: {backbone: resnet10t, epochs: 1, batch_size: 64, fail_with_nan_at_epoch: 1,
         lr: {loguniform: [1.0e-4, 1.0e-2]}}
""")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--data", str(SMALL),
                           "--output", str(tmp_path), "--name", "allnan", "--verbose", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "all 1 trial failed" in proc.stderr and "NonFiniteLossError" in proc.stderr
    assert "Traceback" not in proc.stderr.split("error: all")[-1]


def test_killed_trial_worker_is_retried_and_search_completes(tmp_path):
    """SIGKILL the process running a trial after its first epoch: with max_failures 1, Tune
    restarts the trial from its checkpoint and the search finishes with every trial accounted for."""
    if not SMALL.exists():
        pytest.skip(f"{SMALL} not found")
    from tests.proc_utils import cmdline

    space = tmp_path / "kill.yaml"
    space.write_text("""
search: {sampler: random, seed: 0, num_samples: 2, scheduler: none, max_failures: 1}
retrain: {epochs: 1, tta: false}
params: {backbone: resnet10t, epochs: 3, batch_size: 128, lr: {loguniform: [1.0e-3, 3.0e-3]}}
""")
    exp = tmp_path / "kill"
    log = open(tmp_path / "kill.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "search.run", str(space), "--data", str(SMALL),
                             "--output", str(tmp_path), "--name", "kill", "--verbose", "0"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    killed = None
    started: set[int] = set()
    try:
        deadline = time.time() + 300
        while killed is None:
            assert proc.poll() is None, (tmp_path / "kill.log").read_text()[-3000:]
            assert time.time() < deadline, "no trial reported an epoch in time"
            started |= descendants(proc.pid)
            if any(len(pd.read_csv(p)) >= 1 for p in exp.glob("train_trial_*/progress.csv")
                   if p.stat().st_size):
                workers = [pid for pid in descendants(proc.pid) if "ImplicitFunc" in cmdline(pid)]
                if workers:
                    killed = workers[0]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.5)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(started | descendants(proc.pid))
        log.close()
    output = (tmp_path / "kill.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    assert re.search(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)\s*$", output), output[-1000:]
    trials = pd.read_csv(exp / "trials.csv")
    assert len(trials) == 2
    # The killed trial was retried from its checkpoint (completed), or recorded as failed.
    assert set(trials.status) <= {"completed", "failed"}
    assert (trials[trials.status == "completed"].epochs == 3).all()
    assert (exp / "summary.json").exists()
