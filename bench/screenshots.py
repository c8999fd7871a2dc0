"""Screenshots of what a user watches while a search runs: TensorBoard's Scalars and HParams tabs
and optuna-dashboard, once mid-search and once after the run.

    .venv/bin/pip install optuna-dashboard          # not a dependency of the project
    apt-get install chromium                        # Debian's headless browser, /usr/bin/chromium
    .venv/bin/python bench/screenshots.py --out docs/img/watch

It runs ``spaces/cpu.yaml`` as shipped with only the epochs, the time budget and the data shrunk
(as ``tests/test_headline_path.py`` does), serves the experiment folder with TensorBoard and its
Optuna journal with optuna-dashboard on loopback ports, and takes each page with headless
Chromium: once two trials have reported two epochs (plus TensorBoard's reload interval), and once
the run has exited. Beside the PNGs, ``seen.json`` records what the same servers answered over
HTTP at each moment (TensorBoard's scalar tags and HParams rows, the dashboard's trial states), so
a reader can check a picture against the data behind it. The pages show curves and tables only;
no face is drawn.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search.experiment_folder import ExperimentFolder  # noqa: E402
DATA_DIR = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data")
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because CI and this machine run as root.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars", "--window-size=1600,1000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_space(epochs: int, budget_minutes: float) -> dict:
    space = yaml.safe_load((REPO / "spaces" / "cpu.yaml").read_text())
    space["params"]["epochs"] = epochs
    space["retrain"]["epochs"] = epochs
    space["search"]["time_budget_minutes"] = budget_minutes
    return space


def get_json(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the search exited ({proc.returncode}) before {what}")
        time.sleep(every_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def epochs_reported(exp: Path) -> list[int]:
    return [max(0, len(p.read_text().splitlines()) - 1) for p in exp.glob("t[0-9]*-*/progress.csv")]


def shoot(chromium: str, url: str, png: Path, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--virtual-time-budget={wait_ms}", f"--screenshot={png}", url],
                       check=True, capture_output=True, timeout=180)
    print(f"  {png.name}: {url}", flush=True)


def what_servers_say(tb: str, dash: str) -> dict:
    """The data behind the pictures, as the pages request it."""
    tags = get_json(f"{tb}/data/plugin/scalars/tags")
    experiment = get_json(f"{tb}/data/plugin/hparams/experiment",
                          {"experimentName": "", "hparamsLimit": 1000})
    metrics = [m["name"]["tag"] for m in experiment.get("metricInfos", [])]
    groups = get_json(f"{tb}/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 1000,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": h["name"], "includeInResult": True}
                      for h in experiment.get("hparamInfos", [])]
        + [{"metric": m["name"], "includeInResult": True} for m in experiment.get("metricInfos", [])]})
    rows = {s["name"]: {m["name"]["tag"]: m.get("value") for m in s.get("metricValues", [])}
            for g in groups.get("sessionGroups", []) for s in g["sessions"]}
    studies = get_json(f"{dash}/api/studies")["study_summaries"]
    study = get_json(f"{dash}/api/studies/{studies[0]['study_id']}")
    return {
        "tensorboard_runs": {run: sorted(t) for run, t in tags.items()},
        "hparams_metric_columns": metrics,
        "hparams_rows": rows,
        "optuna_trial_states": [t["state"] for t in study["trials"]],
        "optuna_objective_names": study.get("objective_names") or study.get("metric_names"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA_DIR / "fer2013-small.csv.gz"),
                    help="FER2013 CSV for the tiny search (default: the shared stratified sample)")
    ap.add_argument("--out", default=str(REPO / "docs" / "img" / "watch"),
                    help="folder for the PNGs and seen.json")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial and for the retrain")
    ap.add_argument("--budget-minutes", type=float, default=2.0, help="the search's time budget")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--wait-ms", type=int, default=20000,
                    help="virtual time each page gets to load before its picture")
    args = ap.parse_args(argv)
    dashboard_bin = Path(sys.executable).parent / "optuna-dashboard"
    for need, hint in ((args.chromium, "apt-get install chromium"),
                       (dashboard_bin, "pip install optuna-dashboard"), (args.data, "--data")):
        if not Path(need).exists():
            print(f"error: {need} not found ({hint})", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fer-watch-"))
    space_path = work / "cpu-watch.yaml"
    space_path.write_text(yaml.safe_dump(tiny_space(args.epochs, args.budget_minutes)))
    exp = work / "results" / "cpu-watch"
    procs = []
    try:
        log = open(work / "search.log", "w")
        search = subprocess.Popen([sys.executable, "-m", "search.run", str(space_path), "--data",
                                   args.data, "--output", str(work / "results"), "--name",
                                   "cpu-watch"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        procs.append(search)
        journal = ExperimentFolder(exp).journal
        wait_for("the Optuna journal", journal.exists, 300, proc=search)
        tb_port, dash_port = free_port(), free_port()
        tb, dash = f"http://127.0.0.1:{tb_port}", f"http://127.0.0.1:{dash_port}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(exp), "--host",
             "127.0.0.1", "--port", str(tb_port), "--reload_interval", "5"],
            stdout=subprocess.DEVNULL, stderr=open(work / "tensorboard.log", "w")))
        procs.append(subprocess.Popen(
            [str(dashboard_bin), str(journal), "--host", "127.0.0.1", "--port", str(dash_port)],
            stdout=subprocess.DEVNULL, stderr=open(work / "dashboard.log", "w")))
        print(f"search in {exp}\nTensorBoard {tb}\noptuna-dashboard {dash}", flush=True)
        wait_for("two trials with two epochs",
                 lambda: sum(n >= 2 for n in epochs_reported(exp)) >= 2, 900, proc=search)
        time.sleep(35)  # a trial's newest epoch reaches the event file within ~30 s
        seen = {}
        for moment in ("mid-search", "after"):
            if moment == "after":
                search.wait(timeout=3600)
                time.sleep(15)  # TensorBoard's next reload
            print(f"{moment}:", flush=True)
            seen[moment] = what_servers_say(tb, dash)
            study_id = get_json(f"{dash}/api/studies")["study_summaries"][0]["study_id"]
            shoot(args.chromium, f"{tb}/?darkMode=false#scalars", out / f"tb-scalars-{moment}.png",
                  args.wait_ms)
            shoot(args.chromium, f"{tb}/?darkMode=false#hparams", out / f"tb-hparams-{moment}.png",
                  args.wait_ms)
            shoot(args.chromium, f"{dash}/dashboard/studies/{study_id}",
                  out / f"optuna-{moment}.png", args.wait_ms)
        seen["search_exit_code"] = search.returncode
        seen["console_tail"] = (work / "search.log").read_text().splitlines()[-12:]
        (out / "seen.json").write_text(json.dumps(seen, indent=1) + "\n")
        print(f"wrote {out}", flush=True)
        return 0 if search.returncode == 0 else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
