"""Distributed: cluster.yaml is a valid Ray cluster-launcher config that opens no Ray port to the
internet and runs every node with token authentication; on a real local cluster (a head and two
worker raylets on this machine), token authentication refuses the dashboard's Jobs API without
the token, the smoke search runs with trials on both workers, and a search survives losing a
worker node mid-trial.

The head holds no CPU (it only drives, as on a cluster), each worker raylet one, with explicit
memory sizes (tests/local_cluster.py); the cluster is stopped by PID, never with ``ray stop``.
"""
from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.version import Version
import yaml

from search.experiment_folder import ExperimentFolder
from tests.conftest import training_subset
from tests.local_cluster import (MB, auth_env, free_port, new_cluster_dir, processes_under,
                                 ray_start, teardown, wait_for_nodes)


REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
# Never open to the internet: GCS, dashboard / Jobs API, Ray client server, TensorBoard.
RAY_PORTS = (6379, 8265, 10001, 6006)
WORLD = ("0.0.0.0/0", "::/0")
pytestmark = pytest.mark.slow


def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


# ---------------------------------------------------------------------------------------------
# (a) cluster.yaml: Ray's schema, the security rules, the token
# ---------------------------------------------------------------------------------------------

def test_cluster_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load_cluster()
    validate_config(copy.deepcopy(raw))
    # What `ray up` does before validating (fills in the provider's defaults.yaml; offline: the
    # AWS calls come later, in bootstrap_config).
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)

    assert raw["provider"]["type"] == "aws"
    types, head = raw["available_node_types"], raw["head_node_type"]
    head_type = types[head]
    assert not head_type["resources"].get("GPU")
    assert not head_type["node_config"]["InstanceType"].startswith(("g", "p")), \
        "the head is a CPU instance"
    assert prepared["available_node_types"][head]["max_workers"] == 0
    workers = {name: t for name, t in types.items() if name != head}
    assert workers, "no worker node type"
    for name, t in workers.items():
        assert t["node_config"]["InstanceType"].split(".")[0] in ("g5", "g6", "g6e", "g4dn", "p4d", "p5"), name
        assert t.get("min_workers", 0) == 0 and t["max_workers"] >= 1, (name, t)
    assert raw["max_workers"] >= max(t["max_workers"] for t in workers.values())


def test_cluster_yaml_ships_the_project_the_spaces_and_the_token():
    cfg = load_cluster()
    mounts = cfg["file_mounts"]
    home = Path("/home") / cfg["auth"]["ssh_user"]
    # Ray's default token path on each node (ray/_private/authentication/authentication_token_setup.py).
    assert str(home / ".ray" / "auth_token") in mounts
    project = [remote for remote, local in mounts.items() if Path(local).name == "spaces"]
    assert project, "spaces/ is not mounted"
    install_dir = str(Path(project[0]).parent)
    for remote, local in mounts.items():
        if not remote.endswith("auth_token"):
            assert (REPO / local).exists(), f"file_mounts: {local} does not exist (run from the repo root)"
    setup = " ".join(cfg["setup_commands"])
    assert re.search(r"pip install .*-e " + re.escape(install_dir.replace(str(home), "~")), setup) \
        or f"-e {install_dir}" in setup, setup
    # The nodes' Ray is pinned, and the pin is a version the project allows: a new Ray release on
    # PyPI (what a fresh clone installs) must not fail this test, only a pin outside the range.
    pin = re.search(r"ray\[default,tune\]==([0-9][0-9.]*)", setup)
    assert pin, "setup_commands must pin the nodes' Ray (ray[default,tune]==X.Y.Z)"
    assert Version(pin.group(1)) in ray_requirement().specifier, (pin.group(1), ray_requirement())


def ray_requirement():
    """The project's requirement on Ray (pyproject.toml, as pip installed it)."""
    from importlib.metadata import requires

    return next(r for r in map(Requirement, requires("fer-search")) if r.name == "ray")


def test_the_installed_ray_is_one_the_project_allows():
    import ray

    assert Version(ray.__version__) in ray_requirement().specifier


def _port_span(rule: dict) -> range:
    if str(rule.get("IpProtocol")) == "-1":
        return range(0, 65536)
    low, high = int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535))
    return range(low if low >= 0 else 0, (high if high >= 0 else 65535) + 1)


def _world_open_ports(rules: list[dict]) -> list[tuple[int, str]]:
    """(port, CIDR) for every port of RAY_PORTS that one of ``rules`` opens to the whole internet."""
    found = []
    for rule in rules:
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])]
        cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        for cidr in cidrs:
            if cidr in WORLD:
                found += [(p, cidr) for p in RAY_PORTS if p in _port_span(rule)]
    return found


def _ray_default_rules(extra: list[dict]) -> list[dict]:
    """The ingress Ray authorizes on a security group it creates (aws/config.py,
    _create_default_inbound_rules): all traffic from the group itself, SSH from anywhere, then
    provider.security_group.IpPermissions. Ray's own function where boto3 is installed."""
    try:
        from ray.autoscaler._private.aws.config import _create_default_inbound_rules
    except ImportError:  # the AWS module imports boto3, which `ray up` needs but tests do not
        return [{"FromPort": -1, "ToPort": -1, "IpProtocol": "-1",
                 "UserIdGroupPairs": [{"GroupId": "sg-self"}]},
                {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp",
                 "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}] + list(extra)
    return _create_default_inbound_rules({"sg-self"}, extended_rules=list(extra))


def test_the_security_check_itself_flags_open_ray_ports():
    assert _world_open_ports([{"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
                               "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == [(8265, "0.0.0.0/0")]
    assert {p for p, _ in _world_open_ports([{"FromPort": 6000, "ToPort": 11000, "IpProtocol": "tcp",
                                              "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])} == {6006, 6379, 8265, 10001}
    assert len(_world_open_ports([{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])) == 4
    assert _world_open_ports([{"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp",
                               "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}]) == []
    assert _world_open_ports(_ray_default_rules([])) == [], "Ray's defaults open SSH only"


def test_no_ray_port_is_open_to_the_internet():
    cfg = load_cluster()
    extra = cfg["provider"].get("security_group", {}).get("IpPermissions", [])
    assert _world_open_ports(extra) == [], "provider.security_group.IpPermissions"
    assert _world_open_ports(_ray_default_rules(extra)) == [], "the group Ray would create"
    # Nodes get exactly that group: none names groups or interfaces of its own.
    for name, t in cfg["available_node_types"].items():
        assert not {"SecurityGroupIds", "NetworkInterfaces"} & set(t["node_config"]), name
    # The dashboard (Jobs API) listens on the head's loopback only: reached by `ray dashboard`.
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    assert "--ray-client-server-port" not in head_start


def test_every_ray_start_uses_token_authentication():
    cfg = load_cluster()
    commands = [c for key, cmds in cfg.items() if key.endswith("_commands") for c in cmds]
    commands += [c for t in cfg["available_node_types"].values()
                 for key, cmds in t.items() if key.endswith("_commands") for c in cmds]
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) >= 2 and any("--head" in c for c in starts)
    for c in starts:
        assert re.search(r"RAY_AUTH_MODE=token\s+ray start", c), c
    # Interactive shells (ray exec / attach, job drivers) connect in token mode too.
    assert "export RAY_AUTH_MODE=token" in " ".join(cfg["setup_commands"])


def _committable_files() -> list[Path]:
    """What `git add -A` would commit: tracked files plus untracked ones .gitignore allows."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True, timeout=60).stdout
        return [REPO / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk it, minus the usual
        skip = {".git", ".venv", "results", "data", ".pytest_cache", ".hypothesis", "__pycache__"}
        return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def _in_git() -> bool:
    try:
        return subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO,
                              capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def _git_ignores(path: Path) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, timeout=30).returncode == 0


def test_no_token_is_committed():
    cfg = load_cluster()
    env_lines = " ".join(c for key, cmds in cfg.items() if key.endswith("_commands") for c in cmds)
    assert "RAY_AUTH_TOKEN=" not in env_lines, "the token travels as a file, never in a command"
    # The token file comes from outside the repository, or from a path .gitignore covers.
    remote = str(Path("/home") / cfg["auth"]["ssh_user"] / ".ray" / "auth_token")
    local = Path(os.path.expanduser(cfg["file_mounts"][remote])).resolve()
    if _in_git():
        if local.is_relative_to(REPO):
            assert _git_ignores(local), f"{local} would be committed: add it to .gitignore"
        assert _git_ignores(REPO / ".ray" / "auth_token"), ".gitignore must cover a repo-local token"
    else:
        assert not local.is_relative_to(REPO), f"{local} is inside the repository"

    # No token-shaped value (Ray's tokens are secrets.token_hex(32): 64 hex digits) in any file
    # that would be committed, and not the local token either, whatever its shape.
    tokens = {t for t in (os.environ.get("RAY_AUTH_TOKEN", "").strip(),) if len(t) >= 16}
    for p in (Path.home() / ".ray" / "auth_token", local):
        try:
            if len(p.read_text().strip()) >= 16:
                tokens.add(p.read_text().strip())
        except OSError:
            pass
    hex64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
    leaks = []
    for path in _committable_files():
        try:
            if path.stat().st_size > 5 * MB:
                continue
            text = path.read_text(errors="ignore")
        except OSError:
            continue
        if hex64.search(text) or any(t in text for t in tokens):
            leaks.append(str(path.relative_to(REPO)))
    assert not leaks, f"token-like values in files that would be committed: {leaks}"


# ---------------------------------------------------------------------------------------------
# One local cluster for (b), (c) and (d)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """A head that only drives (no CPU; its dashboard on, for the Jobs API) and two 1-CPU worker
    raylets: two trials at once, one per worker. Every test below shares it; the node-loss test,
    last in this file, kills one of the workers."""
    base, token = new_cluster_dir()
    temp_dir = str(base / "ray")
    # Declare a dead node dead within seconds, not Ray's default of ~30 s (the node-loss test).
    env = {**auth_env(token), "RAY_health_check_period_ms": "1000",
           "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    port, dashboard_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    common = [f"--memory={2048 * MB}", f"--object-store-memory={200 * MB}",
              f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        ray_start(["--head", f"--port={port}", f"--ray-client-server-port={free_port()}",
                   f"--dashboard-agent-listen-port={free_port()}", "--include-dashboard=true",
                   "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                   "--num-cpus=0", *common], env)
        for _ in range(2):
            ray_start([f"--address={address}", f"--dashboard-agent-listen-port={free_port()}",
                       "--num-cpus=1", *common], env)
        nodes = wait_for_nodes(address, env, 3)
        assert sorted(nodes.values()) == ["head", "worker", "worker"], nodes
        yield {"address": address, "env": env, "nodes": nodes, "marker": temp_dir,
               "url": f"http://127.0.0.1:{dashboard_port}", "token": token.read_text()}
    finally:
        teardown(temp_dir, base)


# ---------------------------------------------------------------------------------------------
# (b) token authentication on the Jobs API
# ---------------------------------------------------------------------------------------------

def http_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_jobs_api_refuses_requests_without_the_token(cluster):
    url = cluster["url"] + "/api/jobs/"
    deadline = time.time() + 60
    while True:  # the dashboard may still be binding when `ray start` returns
        try:
            status, body = http_get(url)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.time() > deadline:
                raise
            time.sleep(1)
    assert status in (401, 403), (status, body[:300])
    status, _ = http_get(url, {"Authorization": "Bearer " + secrets.token_hex(32)})
    assert status in (401, 403)
    status, body = http_get(url, {"Authorization": "Bearer " + cluster["token"]})
    assert status == 200, body[:300]
    jobs = json.loads(body)  # the real Jobs API answered: the drivers so far, no job submitted
    assert isinstance(jobs, list) and all(j.get("type") == "DRIVER" for j in jobs), jobs


# ---------------------------------------------------------------------------------------------
# (c) two worker nodes, one search
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def third_csv(small_csv, tmp_path_factory) -> Path:
    """A third of the small sample's Training faces (both held-out splits whole), for (c) and
    (d): epochs long enough for a raylet's death to reach its worker. Asked for before
    ``cluster``, so a missing data file skips before any cluster starts."""
    return training_subset(small_csv, tmp_path_factory.mktemp("data") / "fer2013-third.csv", 3)


@pytest.fixture(scope="module")
def multi_node_search(third_csv, cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    data = third_csv
    # The smoke space, made to run two 1-CPU trials at once: one per worker node.
    space = yaml.safe_load((REPO / "spaces" / "smoke.yaml").read_text())
    space["name"] = "multi"
    space["search"].update(num_samples=2, max_concurrent=2)
    space["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": 0}
    space["retrain"].update(epochs=1, seeds=[0], tta=False, onnx=False)
    space["params"]["epochs"] = 1
    space_file = tmp / "multi.yaml"
    space_file.write_text(yaml.safe_dump(space, sort_keys=False))

    out = tmp / "results"
    cmd = [sys.executable, "-m", "search.run", str(space_file), "--data", str(data),
           "--output", str(out), "--name", "multi", "--address", cluster["address"],
           "--verbose", "0"]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=cluster["env"], capture_output=True,
                              text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        log = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x
                      for x in (e.stdout or "", e.stderr or ""))
        hint = ""
        asked = re.search(r"retraining .*\((\d+) CPU", log)
        if (asked and int(asked.group(1)) > 1) or "can fulfill resource request" in log:
            hint = ("\nThe retrain task asks for more CPUs than any single node has (1 here): it "
                    "must be sized from one node's resources, not ray.cluster_resources(), the "
                    "sum over all nodes; Ray waits forever for a node that can hold it.")
        pytest.fail(f"the search did not finish in 240 s on the two-node cluster{hint}\n"
                    f"{asked.group(0) if asked else ''}\n...\n{log[-3000:]}")
    return proc, out / "multi", cluster["nodes"]


def test_search_on_two_nodes_succeeds(multi_node_search):
    proc, exp, _ = multi_node_search
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.fullmatch(r"PrivateTest accuracy: 0\.\d{4} \(n=350\)", proc.stdout.strip().splitlines()[-1])


def test_trials_ran_on_both_nodes(multi_node_search):
    proc, exp, nodes = multi_node_search
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(exp / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 2 and (trials.status != "failed").all(), trials[["trial_id", "status", "error"]]
    # Both raylets share the host's IP: the node id tells them apart.
    ran_on = set(trials.node_id)
    assert ran_on <= set(nodes), (ran_on, nodes)
    assert len(ran_on) == 2, f"all trials on one node: {trials[['trial_id', 'node_id']]}"
    assert trials.node_ip.nunique() == 1  # why node_ip cannot be the test


def test_outputs_are_in_the_output_path(multi_node_search):
    proc, exp, _ = multi_node_search
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("trials.csv", "summary.json", "best.yaml", "metrics.json",
                 "model/model.safetensors", "model/config.json"):
        assert (exp / name).is_file(), name
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials_run"] == 2 and summary["trials_failed"] == 0
    # The worker node's trial wrote its checkpoint straight to the (shared) output path.
    trial_dirs = sorted(exp.glob("t[0-9]*-*"))
    assert len(trial_dirs) == 2
    for d in trial_dirs:
        assert list(d.glob("checkpoint_*")), f"no checkpoint in {d}"


# ---------------------------------------------------------------------------------------------
# (d) losing a node mid-search (last: it kills one of the cluster's workers)
# ---------------------------------------------------------------------------------------------
# One worker raylet is SIGKILLed by PID while a trial runs on it. With ``search.max_failures``
# the trial continues on the surviving worker from its last checkpoint, the search completes,
# every trial is in trials.csv and the Optuna study, and nothing that had finished runs again.

NODE_LOSS_EPOCHS = 4
NODE_LOSS_TRIALS = 3  # two at once, then a third: on a worker after a first trial has finished

NODE_LOSS_SPACE = {
    "name": "node-loss",
    "search": {"sampler": "random", "seed": 0, "num_samples": NODE_LOSS_TRIALS,
               "max_concurrent": 2, "asha": False, "max_failures": 2, "checkpoint": True},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "retrain": {"epochs": 1, "seeds": [0], "tta": False, "onnx": False},
    "params": {"backbone": "resnet10t", "epochs": NODE_LOSS_EPOCHS, "batch_size": 64,
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


def test_a_search_survives_losing_a_worker_node(third_csv, cluster, tmp_path):
    space = tmp_path / "node-loss.yaml"
    space.write_text(yaml.safe_dump(NODE_LOSS_SPACE, sort_keys=False))
    out, exp = tmp_path / "results", tmp_path / "results" / "node-loss"
    data = third_csv
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
            done = {d: len(df) for d, df in runs.items() if len(df) == NODE_LOSS_EPOCHS}
            # Two epochs left at least: the raylet's death must reach its worker (about a
            # second) before the trial could finish anyway.
            running = {d: df for d, df in runs.items() if 1 <= len(df) <= NODE_LOSS_EPOCHS - 2}
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
    assert len(trials) == NODE_LOSS_TRIALS, trials[["trial_id", "status", "epochs"]]
    assert (trials.status == "completed").all(), trials[["trial_id", "status", "error"]]
    assert (trials.epochs == NODE_LOSS_EPOCHS).all(), trials[["trial_id", "epochs"]]
    study = folder.load_study()
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * NODE_LOSS_TRIALS

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
    assert list(rows["epoch"]) == list(range(1, NODE_LOSS_EPOCHS + 1)), rows[["epoch", "node_id"]]
    assert set(resumed["node_id"]) != {killed_node}
    assert str(trials.set_index("trial_id").loc[str(rows["trial_id"].iloc[0]), "node_id"]) != killed_node
    retried = sum(int((df["iterations_since_restore"] == 1).sum()) > 1 for df in after.values())
    print(f"node loss: raylet of node {killed_node[:8]} killed with trial {victim.name[:24]} last seen at "
          f"epoch {epochs_at_kill}/{NODE_LOSS_EPOCHS}; trials retried: {retried}; epochs redone: "
          f"{len(rows) - NODE_LOSS_EPOCHS} (resumed at epoch {int(resumed['epoch'].iloc[0])}); "
          f"{len(finished_before)} finished trial(s) untouched")
