"""Losing a node mid-search: a head and two worker raylets on this machine; one worker raylet is
SIGKILLed by PID while a trial runs on it. With ``search.max_failures`` the trial continues on the
surviving node from its last checkpoint, the search completes, every trial is in trials.csv and
the Optuna study, and nothing that had finished is run again.

The head holds no CPU (it only drives, as on a cluster), each worker raylet one: two trials at
once, one per worker. Teardown is by PID (tests/local_cluster.py).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from search.experiment_folder import ExperimentFolder
from tests.conftest import training_subset
from tests.local_cluster import (MB, auth_env, free_port, new_cluster_dir, processes_under,
                                 ray_start, teardown, wait_for_nodes)

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4
TRIALS = 3  # two at once, then a third: it runs on a worker after a first trial has finished
pytestmark = pytest.mark.slow

SPACE = {
    "name": "node-loss",
    "search": {"sampler": "random", "seed": 0, "num_samples": TRIALS, "max_concurrent": 2,
               "asha": False, "max_failures": 2, "checkpoint": True},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "retrain": {"epochs": 1, "seeds": [0], "tta": False, "onnx": False},
    "params": {"backbone": "resnet10t", "epochs": EPOCHS, "batch_size": 64,
               "lr": {"loguniform": [1.0e-3, 3.0e-3]}},
}


def raylet_pid(marker: str, node_id: str) -> int | None:
    """The raylet of ``node_id`` (its command line carries ``--node_id=<hex>``)."""
    for pid in processes_under(marker):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "raylet" in cmd.split(" ", 1)[0] and f"--node_id={node_id}" in cmd:
            return pid
    return None


def progress(exp: Path) -> dict[Path, pd.DataFrame]:
    out = {}
    for p in exp.glob("t[0-9]*-*/progress.csv"):
        try:
            if p.stat().st_size:
                out[p.parent] = pd.read_csv(p, dtype={"trial_id": str, "node_id": str})
        except (OSError, pd.errors.EmptyDataError):
            continue
    return out


@pytest.fixture
def three_raylets():
    base, token = new_cluster_dir()
    temp_dir = str(base / "ray")
    # Declare a dead node dead within seconds, not Ray's default of ~30 s.
    env = {**auth_env(token), "RAY_health_check_period_ms": "1000",
           "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [f"--memory={2048 * MB}", f"--object-store-memory={150 * MB}",
              f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        ray_start(["--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
                   f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-port={free_port()}",
                   "--include-dashboard=false", "--num-cpus=0", *common], env)
        for _ in range(2):
            ray_start([f"--address={address}", f"--dashboard-agent-listen-port={free_port()}",
                       "--num-cpus=1", *common], env)
        nodes = wait_for_nodes(address, env, 3)
        assert sorted(nodes.values()) == ["head", "worker", "worker"], nodes
        yield {"address": address, "env": env, "nodes": nodes, "marker": temp_dir}
    finally:
        teardown(temp_dir, base)


def test_a_search_survives_losing_a_worker_node(three_raylets, small_csv, tmp_path):
    cluster = three_raylets
    space = tmp_path / "node-loss.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    out, exp = tmp_path / "results", tmp_path / "results" / "node-loss"
    # A third of the Training faces: epochs long enough for a raylet's death to reach its worker.
    data = training_subset(small_csv, tmp_path / "fer2013-third.csv", every=3)
    log_path = tmp_path / "search.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.run", str(space), "--data", str(data),
         "--output", str(out), "--name", "node-loss", "--address", cluster["address"],
         "--verbose", "1"],
        cwd=REPO, env=cluster["env"], stdout=log, stderr=subprocess.STDOUT)
    killed_node, victim, finished_before = None, None, {}
    try:
        # Wait until a trial has finished and another runs with a checkpoint on a worker: kill
        # that worker's raylet then (its trial actor dies with it).
        deadline = time.time() + 300
        while killed_node is None:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "no trial finished and another checkpointed in time\n" \
                + log_path.read_text()[-3000:]
            runs = progress(exp)
            done = {d: len(df) for d, df in runs.items() if len(df) == EPOCHS}
            # Two epochs left at least: the raylet's death must reach its worker (about a
            # second) before the trial could finish anyway.
            running = {d: df for d, df in runs.items() if 1 <= len(df) <= EPOCHS - 2}
            if done and running:
                victim, df = next(iter(running.items()))
                node = str(df["node_id"].iloc[-1])
                pid = raylet_pid(cluster["marker"], node)
                assert pid, f"no raylet process for node {node}"
                os.kill(pid, signal.SIGKILL)
                killed_node, finished_before = node, done
                epochs_at_kill = len(df)
            time.sleep(0.3)
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = log_path.read_text()
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)\s*$", output), output[-1000:]

    folder = ExperimentFolder(exp)
    trials = folder.read_trials()
    assert len(trials) == TRIALS, trials[["trial_id", "status", "epochs"]]
    assert (trials.status == "completed").all(), trials[["trial_id", "status", "error"]]
    assert (trials.epochs == EPOCHS).all(), trials[["trial_id", "epochs"]]
    study = folder.load_study()
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * TRIALS

    after = progress(exp)
    # Nothing that had finished ran again: its per-epoch record is unchanged.
    for d, n in finished_before.items():
        assert len(after[d]) == n, (d.name, n, len(after[d]))
    # The killed trial restarted once, on the surviving worker, from its last checkpoint: the
    # epochs after the restart continue where the checkpoint left off, none reported twice.
    rows = after[victim]
    restarts = rows.index[rows["iterations_since_restore"] == 1].tolist()
    assert len(restarts) == 2, rows[["epoch", "training_iteration", "iterations_since_restore"]]
    resumed = rows.iloc[restarts[1]:]
    assert int(resumed["epoch"].iloc[0]) > 1, rows[["epoch", "iterations_since_restore"]]
    assert list(rows["epoch"]) == list(range(1, EPOCHS + 1)), rows[["epoch", "node_id"]]
    assert set(resumed["node_id"]) != {killed_node}
    assert str(trials.set_index("trial_id").loc[str(rows["trial_id"].iloc[0]), "node_id"]) != killed_node
    retried = sum(int((df["iterations_since_restore"] == 1).sum()) > 1 for df in after.values())
    print(f"node loss: raylet of node {killed_node[:8]} killed with trial {victim.name[:24]} last seen at "
          f"epoch {epochs_at_kill}/{EPOCHS}; trials retried: {retried}; epochs redone: "
          f"{len(rows) - EPOCHS} (resumed at epoch {int(resumed['epoch'].iloc[0])}); "
          f"{len(finished_before)} finished trial(s) untouched")
