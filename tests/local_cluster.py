"""A Ray cluster of several raylets on this machine, for tests: start, wait, tear down by PID.

Each raylet is started with explicit CPU and memory sizes (a raylet otherwise claims the whole
host), all in one temp dir of their own with a fresh token, on free ports, and stopped by PID
(every process whose command line names that temp dir, with its children): never ``ray stop``,
which would stop every Ray on the machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
MB = 1024 * 1024



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def auth_env(token_file: Path) -> dict:
    """Token mode for every process of a test cluster: its nodes, its driver, the CLI."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    return env


def new_cluster_dir() -> tuple[Path, Path]:
    """A short private folder in /tmp (Ray's socket paths must stay under 108 bytes) with a fresh
    token file in it: (folder, token file)."""
    base = Path(tempfile.mkdtemp(prefix="rtc-", dir="/tmp"))
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return base, token


def ray_start(args: list[str], env: dict) -> None:
    proc = subprocess.run([RAY, "start", *args], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, f"ray start {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def processes_under(marker: str) -> set[int]:
    """PIDs whose command line contains ``marker`` (the cluster's temp dir), and their descendants
    (Ray's workers rename themselves to ray::..., but stay children of their raylet)."""
    cmd, parent = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found = {pid for pid, c in cmd.items() if marker in c and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, pp in parent.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return found


def teardown(marker: str, base: Path) -> None:
    """Stop one test cluster: SIGTERM every process of it, SIGKILL what is left after 3 s."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        pids = processes_under(marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
    shutil.rmtree(base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:  # a zombie (state Z) has exited; it only waits for its parent to reap it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cluster_nodes(address: str, env: dict) -> dict[str, str]:
    """{node id: 'head' | 'worker'} of the alive nodes, seen by a driver with the cluster's token."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False);"
            "print(json.dumps({n['NodeID']: 'head' if 'node:__internal_head__' in n['Resources'] "
            "else 'worker' for n in ray.nodes() if n['Alive']}))" % address)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for_nodes(address: str, env: dict, count: int, timeout: float = 90) -> dict[str, str]:
    """{node id: 'head' | 'worker'} once ``count`` nodes are alive (or what there is at the
    timeout, for the caller's assertion to show)."""
    deadline, nodes = time.time() + timeout, {}
    while time.time() < deadline:
        nodes = cluster_nodes(address, env)
        if len(nodes) == count:
            break
        time.sleep(2)
    return nodes
