"""How the driver's cost grows with the search: 100-1,000 trials, 16-256 at once, on this machine.

The project's real driver (``search.experiment.build_tuner``: the same Optuna searcher, ResumableASHA,
TensorBoard and console callbacks, Optuna journal and Tune storage as a search) runs over a
**surrogate trial** that replays real learning curves (bench/curves.json, recorded once by
bench/record_curves.py from real trials on the small sample): each epoch sleeps ``--epoch-seconds``,
writes a checkpoint of ``--checkpoint-kb`` as a real trial does, and reports the recorded metrics of
the config Optuna proposed. Ray starts with as many logical CPUs as trials run at once, on one
raylet or several (``--raylets``, ``ray.cluster_utils.Cluster``). Each cell runs in a fresh process.

Per cell: wall time against the ideal (epochs run x epoch length / concurrency), driver CPU seconds
per reported result, driver peak RSS, Optuna's suggest time as the study grows, the time to write
trials.csv + best.yaml, the TensorBoard summary and the report at the end, the experiment folder's
size, ASHA's share of epochs, and the best PublicTest accuracy found against the best any proposed
config reaches when every trial runs to the end (exact: the curves are known), and the wall
time beyond the ideal split by where the slots' time went (start-up, the tail, inside trials,
between trials: ``slot_accounting``).

    .venv/bin/python bench/bench_scale.py grid --trials 100,300,1000 --concurrency 16,64,256
    .venv/bin/python bench/bench_scale.py cell --trials 1000 --concurrency 64 [--profile prof.txt]
    .venv/bin/python bench/bench_scale.py idle --actors 64     # what 64 idle trial workers cost
    .venv/bin/python bench/bench_scale.py idle --actors 64 --job-env   # ... started as on a cluster
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
CURVES = HERE / "curves.json"
MB = 1024 * 1024
# What search.experiment.start_ray hands workers through a job runtime_env when it joins a cluster.
JOB_ENV = {"env_vars": {"HF_HUB_OFFLINE": "1"}}


# --- the surrogate trial ------------------------------------------------------------------------

def curve_key(config: dict, grid: dict) -> str:
    return json.dumps([round(float(config[k]), 8) for k in grid])


def make_surrogate(record: dict, epoch_s: float, checkpoint_bytes: int):
    """A Tune function with the real trial's signature that replays the recorded curve of the
    config it is given. Only plain values are captured: the workers import neither torch nor
    this project (a real worker would; here 256 of them must fit in 24 GiB)."""
    curves = {curve_key(c["config"], record["grid"]): c["epochs"] for c in record["curves"]}
    grid = dict(record["grid"])
    payload = os.urandom(checkpoint_bytes)
    finished_key = "trial_finished"  # search.trainable's

    def train_trial(config, data, threads=1, checkpoint=True, measure=False,
                    checkpoint_every_s=0.0):
        import tempfile as _tempfile
        import time as _time

        import ray
        from ray import tune

        curve = curves[curve_key(config, grid)]
        start = 0
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                start = json.loads(Path(d, "state.json").read_text())["epoch"]
        node = ray.get_runtime_context().get_node_id()
        # Where each slot's time goes (slot_accounting): which worker ran this trial, from when.
        slot = {"worker_pid": os.getpid(), "began_at": _time.time()}
        last_checkpoint = _time.monotonic()  # search.trainable.CheckpointPacer's rule
        for metrics in curve[start:]:
            _time.sleep(epoch_s)
            result = {**metrics, finished_key: bool(metrics["final_epoch"]),
                      "node_id": node, **slot, "reported_at": _time.time()}
            if not checkpoint or _time.monotonic() - last_checkpoint < checkpoint_every_s:
                tune.report(result)
                continue
            last_checkpoint = _time.monotonic()
            with _tempfile.TemporaryDirectory() as d:
                Path(d, "state.json").write_text(json.dumps({"epoch": metrics["epoch"]}))
                Path(d, "state.bin").write_bytes(payload)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(d))

    return train_trial


class NoPixels:
    """What the surrogate is handed instead of FER2013: it trains nothing."""

    def without_private_test(self):
        return self


# --- one cell -----------------------------------------------------------------------------------

def space_text(record: dict, trials: int, concurrency: int, sampler: str, reduction: int,
               checkpoint_every_s: float = 0.0) -> str:
    import yaml

    params = {k: v for k, v in record["base"].items()}
    params["epochs"] = len(record["curves"][0]["epochs"])
    params.update({k: {"choice": list(v)} for k, v in record["grid"].items()})
    doc = {"name": "scale", "objectives": "val_accuracy",
           "search": {"sampler": sampler, "seed": 0, "num_samples": trials,
                      "max_concurrent": concurrency,
                      "asha": {"grace_period": 1, "reduction_factor": reduction},
                      "checkpoint": checkpoint_every_s or True, "exact_resume": False},
           "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
           "retrain": {"epochs": 1, "seeds": [0], "tta": False},
           "params": params}
    return yaml.safe_dump(doc, sort_keys=False)


class MemoryWatch(threading.Thread):
    """Samples the machine's available memory; past ``floor_mb`` it stops the cell (it would
    push the machine into swap or the OOM killer) and says so."""

    def __init__(self, floor_mb: int):
        super().__init__(daemon=True)
        self.floor_mb, self.min_available_mb, self.tripped = floor_mb, 1 << 30, False
        self.stop = threading.Event()

    @staticmethod
    def available_mb() -> int:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
        return 1 << 30

    def run(self):
        while not self.stop.wait(1.0):
            avail = self.available_mb()
            self.min_available_mb = min(self.min_available_mb, avail)
            if avail < self.floor_mb and not self.tripped:
                self.tripped = True
                import ray
                print(json.dumps({"did_not_fit": f"{avail} MB available, under the "
                                                 f"{self.floor_mb} MB floor"}), flush=True)
                ray.shutdown()  # this process started Ray's node: its processes go with it
                os._exit(3)


class CpuWatch(threading.Thread):
    """Where the machine's CPU goes during a cell, from /proc every EVERY_S seconds: this process's
    threads by name (Python threads by their threading name, Ray's C++ threads by their kernel
    name) and every process Ray started, by kind (trial workers, raylet, GCS, Ray's other
    helpers). A process or thread that ends between two samples keeps its last sampled time;
    one that lives less than EVERY_S may be missed (trial workers are reused: they live long).
    Its own CPU (``self_cpu_s``) is left out of the driver's figures."""

    TICK = os.sysconf("SC_CLK_TCK")
    EVERY_S = 5.0

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.threads: dict[int, list] = {}   # tid -> [name, first ticks, last ticks]
        self.procs: dict[int, list] = {}     # pid -> [kind, first ticks, last ticks]
        self.machine = [None, None]          # /proc/stat busy ticks at start, last
        self.self_cpu_s = 0.0

    @staticmethod
    def _stat(path: str) -> tuple[str, int, int]:
        text = Path(path).read_text()
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        return comm, int(rest[1]), int(rest[11]) + int(rest[12])  # comm, ppid, utime + stime

    @staticmethod
    def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
        """{thread id: (kernel name, CPU ticks)} of process ``pid``; threads ending meanwhile skipped."""
        out = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                comm, _, ticks = CpuWatch._stat(f"{task}/stat")
            except (OSError, ValueError):
                continue
            out[int(task.name)] = (comm, ticks)
        return out

    @staticmethod
    def _kind(pid: int, comm: str) -> str:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = ""
        # By the executable's name first: the raylet's arguments name the worker and agent
        # commands. Ray's agents title themselves ray::DashboardAgent / ray::RuntimeEnvAgent.
        if comm in ("raylet", "gcs_server"):
            return comm
        if any(m in cmd for m in ("DashboardAgent", "RuntimeEnvAgent", "dashboard/agent.py",
                                  "runtime_env/agent")):
            return "Ray agents"
        if cmd.startswith("ray::") or "default_worker.py" in cmd:
            return "trial workers"
        for kind in ("log_monitor", "dashboard", "monitor"):
            if kind in cmd:
                return kind
        return "other"

    def sample(self, first: bool = False):
        names = {t.native_id: t.name for t in threading.enumerate()}
        me = os.getpid()
        with self.lock:
            for tid, (comm, ticks) in self.thread_ticks(me).items():
                name = names.get(tid, comm)
                name = "main" if tid == me else re.sub(r"[-_]?\d+", "", name) or name
                rec = self.threads.setdefault(tid, [name, 0 if not first else ticks, ticks])
                rec[2] = ticks
            parents, stats = {}, {}
            for d in Path("/proc").iterdir():
                if d.name.isdigit():
                    try:
                        comm, ppid, ticks = self._stat(f"{d}/stat")
                    except (OSError, ValueError, IndexError):
                        continue
                    parents[int(d.name)], stats[int(d.name)] = ppid, (comm, ticks)
            for pid, (comm, ticks) in stats.items():
                p, seen = parents.get(pid), 0
                while p not in (None, 0, 1, me) and seen < 20:
                    p, seen = parents.get(p), seen + 1
                if p != me or pid == me:
                    continue
                rec = self.procs.get(pid)
                if rec is None:
                    rec = self.procs[pid] = [self._kind(pid, comm), ticks if first else 0, ticks]
                rec[2] = ticks
            busy = sum(int(v) for i, v in enumerate(Path("/proc/stat").read_text()
                                                    .splitlines()[0].split()[1:]) if i not in (3, 4))
            self.machine[0 if first else 1] = busy
            if first:
                self.machine[1] = busy

    def run(self):
        self.sample(first=True)
        while not self.stop.wait(self.EVERY_S):
            self.sample()
        self.self_cpu_s = time.thread_time()

    def finish(self, results: int, wall_s: float) -> dict:
        """ms of CPU per result by thread group and by process kind, and the machine's busy share."""

        def per_result(groups: dict) -> dict:
            return {k: round(1000 * v / self.TICK / max(results, 1), 2)
                    for k, v in sorted(groups.items(), key=lambda kv: -kv[1]) if v}

        threads, procs = {}, {}
        for tid, (name, a, b) in self.threads.items():
            if tid != self.native_id:
                threads[name] = threads.get(name, 0) + b - a
        for kind, a, b in self.procs.values():
            procs[kind] = procs.get(kind, 0) + b - a
        cores = os.cpu_count() or 1
        return {"driver_threads_ms_per_result": per_result(threads),
                "ray_processes_ms_per_result": per_result(procs),
                "ray_processes_ms_total_per_result": round(
                    1000 * sum(procs.values()) / self.TICK / max(results, 1), 2),
                "machine_busy_share": round((self.machine[1] - self.machine[0]) / self.TICK
                                            / (wall_s * cores), 3)}


def timed_suggest(durations: list):
    """Time every Optuna suggest of the searcher (bench-side: the class is patched here only)."""
    from search.searcher import PrunedAwareOptunaSearch

    original = PrunedAwareOptunaSearch.suggest

    def suggest(self, trial_id):
        t0 = time.perf_counter()
        out = original(self, trial_id)
        durations.append(time.perf_counter() - t0)
        return out

    PrunedAwareOptunaSearch.suggest = suggest


def timed_snapshots(spent: list):
    """Count Tune's experiment snapshots and the driver's main-thread CPU in each (writing the
    state of every trial that changed since the last one and the pickled searcher; the copy
    into the experiment folder that follows runs in a background thread, not counted here)."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.save_to_dir

    def save_to_dir(self):
        t0 = time.thread_time()
        original(self)
        spent.append(time.thread_time() - t0)

    TuneController.save_to_dir = save_to_dir


def idle_cpu_per_s(seconds: float = 5.0) -> float:
    """The driver's CPU seconds per second with Ray up and nothing running (Ray's own threads):
    a cost per second of wall, not per result, which a slow cell spreads over fewer results."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def start_cluster(concurrency: int, raylets: int, tmp: Path):
    """Ray with ``concurrency`` logical CPUs on ``raylets`` raylets (the head holds none when
    there are several, as on a cluster whose head only drives)."""
    import ray

    store = 150 * MB
    if raylets == 1:
        # As search.experiment.start_ray starts a local Ray: no job runtime_env.
        ray.init(num_cpus=concurrency, include_dashboard=False, object_store_memory=store,
                 log_to_driver=False, _temp_dir=str(tmp / "ray"))
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": store, "include_dashboard": False,
        "temp_dir": str(tmp / "ray")})
    per = concurrency // raylets
    for i in range(raylets):
        cluster.add_node(num_cpus=per + (1 if i < concurrency % raylets else 0),
                         object_store_memory=store)
    cluster.wait_for_nodes()
    # As start_ray joins a cluster (--address): the workers' variables in a job runtime_env.
    ray.init(address=cluster.address, log_to_driver=False, runtime_env=JOB_ENV)
    return cluster


def run_cell(args) -> dict:
    import pandas as pd
    import ray

    from search.experiment import build_tuner
    from search.experiment_folder import COMPLETED, FAILED, ExperimentFolder
    from search.outputs import trials_table
    from search.space import load_space

    record = json.loads(Path(args.curves).read_text())
    tmp = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    space_file = tmp / "scale.yaml"
    space_file.write_text(space_text(record, args.trials, args.concurrency, args.sampler,
                                     args.reduction_factor, args.checkpoint_every_s))
    space = load_space(space_file)
    experiment = tmp / "results" / "scale"
    experiment.mkdir(parents=True)
    suggest_s: list[float] = []
    timed_suggest(suggest_s)
    snapshot_s: list[float] = []
    timed_snapshots(snapshot_s)
    watch = MemoryWatch(args.memory_floor_mb)
    cluster = start_cluster(args.concurrency, args.raylets, tmp)
    watch.start()
    idle_rate = idle_cpu_per_s()
    trial_fn = make_surrogate(record, args.epoch_seconds, args.checkpoint_kb * 1024)
    log = open(tmp / "console.log", "w")
    out = {"trials": args.trials, "concurrency": args.concurrency, "raylets": args.raylets,
           "epoch_s": args.epoch_seconds, "checkpoint_kb": args.checkpoint_kb,
           "checkpoint_every_s": args.checkpoint_every_s,
           "sampler": args.sampler, "reduction_factor": args.reduction_factor}
    profiler = None
    try:
        # The real driver's console goes to a file: the search's own lines, at its default verbosity.
        from search.console import quiet_ray_console
        from search.tensorboard_logs import write_hparams_experiment
        quiet_ray_console()  # as run_experiment does at the search's default verbosity
        write_hparams_experiment(experiment, space)
        tuner = build_tuner(space, NoPixels(), experiment, {"cpu": 1, "gpu": 0}, verbose=1,
                            trial_fn=trial_fn)
        if args.profile:
            import cProfile
            # the main thread's CPU, not wall time: waiting on Ray or the disk is not work
            profiler = cProfile.Profile(time.thread_time_ns, 1e-9)
        cpu0, wall0, started = time.process_time(), time.perf_counter(), time.time()
        main0 = time.thread_time()  # Tune's loop, callbacks, searcher, scheduler: this thread
        cpu_watch = CpuWatch()
        cpu_watch.start()
        stdout = sys.stdout
        sys.stdout = log
        try:
            if profiler:
                profiler.enable()
            results = tuner.fit()
        finally:
            if profiler:
                profiler.disable()
            sys.stdout = stdout
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        ended = time.time()
        main_cpu = time.thread_time() - main0
        cpu_watch.stop.set()
        cpu_watch.join()
        cpu_watch.sample()  # the last figures: what follows (the end files) is not the search's
        cpu -= cpu_watch.self_cpu_s  # the watch's own /proc reading is not the driver's work

        t0 = time.perf_counter()
        table = trials_table(results, space)
        folder = ExperimentFolder(experiment)
        table.to_csv(folder.trials_csv, index=False)
        out["trials_csv_s"] = time.perf_counter() - t0
        write_end_files(folder, table, out)
        epochs_run = int(table["epochs"].sum())
        results_n = epochs_run  # one reported result per epoch
        full = {curve_key(c["config"], record["grid"]): max(e["val_accuracy"] for e in c["epochs"])
                for c in record["curves"]}
        proposed = [full[curve_key({k: row[f"config/{k}"] for k in record["grid"]}, record["grid"])]
                    for _, row in table.iterrows()]
        n = len(suggest_s)
        tenth = max(n // 10, 1)
        out.update(
            wall_s=wall, ideal_s=epochs_run * args.epoch_seconds / args.concurrency,
            results=results_n, driver_cpu_s=cpu, driver_ms_per_result=1000 * cpu / max(results_n, 1),
            # where it goes: the main thread (Python: Tune's loop and all this project adds),
            # Ray's threads at rest (per second of wall, measured before the search), snapshots
            driver_main_ms_per_result=1000 * main_cpu / max(results_n, 1),
            driver_idle_ms_per_result=1000 * idle_rate * wall / max(results_n, 1),
            snapshots=len(snapshot_s),
            snapshot_ms_per_result=1000 * sum(snapshot_s) / max(results_n, 1),
            driver_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            min_available_mb=watch.min_available_mb,
            suggest_ms_first=1000 * float(pd.Series(suggest_s[:tenth]).median()) if n else None,
            suggest_ms_last=1000 * float(pd.Series(suggest_s[-tenth:]).median()) if n else None,
            trials_run=len(table), completed=int((table["status"] == COMPLETED).sum()),
            failed=int((table["status"] == FAILED).sum()),
            epochs_run=epochs_run, epochs_full=len(table) * space.max_epochs,
            best_found=float(table["best_val_accuracy"].max()),
            best_if_all_ran=float(max(proposed)) if proposed else None,
            folder_mb=folder_size(experiment) / MB)
        out.update(cpu_watch.finish(results_n, wall))
        out.update(slot_accounting(results, started, ended, args.concurrency, args.epoch_seconds))
        out["wall_over_ideal"] = out["wall_s"] / out["ideal_s"] if out["ideal_s"] else None
        out["asha_share"] = out["epochs_run"] / out["epochs_full"]
    finally:
        watch.stop.set()
        log.close()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if profiler:
            import pstats
            profiler.dump_stats(args.profile + ".prof")  # for pstats' callers/callees
            with open(args.profile, "w") as f:
                pstats.Stats(profiler, stream=f).sort_stats("cumulative").print_stats(60)
                pstats.Stats(profiler, stream=f).sort_stats("tottime").print_stats(40)
        if args.keep:
            out["kept"] = str(experiment)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def slot_accounting(results, began: float, ended: float, concurrency: int,
                    epoch_s: float) -> dict:
    """Wall time beyond the ideal, split by where the slots' time went, in seconds of wall
    (slot-seconds / concurrency, so the parts add up to wall - ideal):

    - ``startup``: before a slot's first trial began (Ray starting its worker),
    - ``turnover``: between one trial's last result and the next trial beginning on that worker
      (Tune stopping one, the searcher's suggest, the reused actor's reset, the new trial's start),
    - ``in_trial``: inside a trial beyond its epochs' sleeps (reporting, checkpoints),
    - ``tail``: after a slot's last trial ended, while others still ran,
    - ``other``: the rest (slots whose worker never ran a trial, a replaced worker)."""
    runs = []  # (worker pid, began, last result, epochs) per run of a trial function
    for r in results:
        df = r.metrics_dataframe
        if df is None or "worker_pid" not in df:
            continue
        for (pid, t0), g in df.groupby(["worker_pid", "began_at"]):
            runs.append((int(pid), float(t0), float(g["reported_at"].max()), len(g)))
    by_worker: dict[int, list] = {}
    for run in sorted(runs, key=lambda x: x[1]):
        by_worker.setdefault(run[0], []).append(run)
    slots = sorted(by_worker.values(), key=lambda rs: rs[0][1])[:concurrency]
    part = dict.fromkeys(("startup", "turnover", "in_trial", "tail"), 0.0)
    for rs in slots:
        part["startup"] += rs[0][1] - began
        part["turnover"] += sum(b[1] - a[2] for a, b in zip(rs, rs[1:]))
        part["tail"] += max(0.0, ended - max(x[2] for x in rs))
    part["in_trial"] = sum(end - t0 - n * epoch_s for _, t0, end, n in runs)
    ideal = sum(n for *_, n in runs) * epoch_s / concurrency
    out = {f"over_{k}_s": round(v / concurrency, 1) for k, v in part.items()}
    out["over_other_s"] = round(ended - began - ideal - sum(part.values()) / concurrency, 1)
    out["workers_used"] = len(by_worker)
    firsts = sorted(rs[0][1] - began for rs in slots)  # when each slot's first trial began
    out["slot_first_began_s"] = [round(firsts[int(q * (len(firsts) - 1))], 1)
                                 for q in (0, 0.25, 0.5, 0.75, 1)] if firsts else []
    # Start-up: until the last slot's first trial began (on 2 cores, starting 64+ Python workers
    # that import Ray Tune is most of it).
    out["startup_s"] = round(firsts[-1], 1) if firsts else None
    return out


def write_end_files(folder, table, out: dict) -> None:
    """What finish_experiment writes besides the retrain: best.yaml, the TensorBoard summary,
    the report (its figures over every trial), each timed. The retrain's own files are stand-ins
    (a summary naming the best trial, empty metrics): the retrain is not what this measures."""
    from search.experiment_folder import write_json
    from search.report import write_report
    from search.tensorboard_logs import write_hparams_overview

    best = table.loc[table["best_val_accuracy"].idxmax()]
    write_json(folder.summary_json, {"best_trial": str(best["trial_id"])})
    write_json(folder.metrics_json, {})
    t0 = time.perf_counter()
    write_hparams_overview(folder.path)
    out["tensorboard_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_report(folder.path)
    out["report_s"] = time.perf_counter() - t0
    out["end_files_s"] = out["trials_csv_s"] + out["tensorboard_s"] + out["report_s"]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def idle_actors(n: int, seconds: float, job_env: bool = False) -> dict:
    """Start ``n`` Ray actors that import Ray Tune (as a trial worker does) and then do nothing,
    and measure their CPU (from /proc) over ``seconds``: what ``n`` trial workers cost the machine
    running them while they wait, whatever the trials do (the raylet's and GCS's share per worker
    not included). Per thread, too: a Ray worker's main thread wakes up to check for signals.
    ``start_s`` is how long the ``n`` took to start; ``job_env`` hands the workers a variable
    through a job runtime_env (as ``search.experiment.start_ray`` does on a cluster) instead of
    the environment Ray starts with (as it does for a local Ray)."""
    import ray

    ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False,
             runtime_env=JOB_ENV if job_env else None)
    try:
        @ray.remote(num_cpus=1)
        class Idle:
            def pid(self):
                import ray.tune  # noqa: F401  what Tune's trainable actor imports
                return os.getpid()

        t0 = time.perf_counter()
        actors = [Idle.remote() for _ in range(n)]  # held: an actor without a handle ends
        pids = ray.get([a.pid.remote() for a in actors])
        started = time.perf_counter() - t0
        time.sleep(5.0)  # past start-up

        def threads():
            return {(pid, tid): v for pid in pids for tid, v in CpuWatch.thread_ticks(pid).items()}

        before, w0 = threads(), time.perf_counter()
        time.sleep(seconds)
        after, wall = threads(), time.perf_counter() - w0
    finally:
        ray.shutdown()
    by_thread: dict[str, float] = {}
    for key, (name, ticks) in after.items():
        by_thread[name] = by_thread.get(name, 0) + ticks - before.get(key, (name, 0))[1]
    per_s = {k: round(1000 * v / CpuWatch.TICK / wall / n, 2)
             for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v}
    total = sum(by_thread.values()) / CpuWatch.TICK / wall
    return {"actors": n, "job_env": job_env, "start_s": round(started, 1),
            "cores_busy": round(total, 3),
            "ms_per_s_each": round(1000 * total / n, 2), "by_thread_ms_per_s_each": per_s}


# --- the grid -----------------------------------------------------------------------------------

COLUMNS = [
    ("trials", "trials", "{:d}"), ("concurrency", "at once", "{:d}"), ("raylets", "raylets", "{:d}"),
    ("wall_s", "wall (s)", "{:.0f}"), ("ideal_s", "ideal (s)", "{:.0f}"),
    ("wall_over_ideal", "wall / ideal", "{:.2f}"), ("startup_s", "start-up (s)", "{:.0f}"),
    ("over_startup_s", "beyond ideal: start-up (s)", "{:.0f}"),
    ("over_tail_s", "tail (s)", "{:.0f}"), ("over_in_trial_s", "in trials (s)", "{:.0f}"),
    ("over_turnover_s", "between trials (s)", "{:.0f}"), ("over_other_s", "other (s)", "{:.0f}"),
    ("results", "results", "{:d}"),
    ("driver_ms_per_result", "driver CPU / result (ms)", "{:.1f}"),
    ("driver_main_ms_per_result", "of which main thread (ms)", "{:.1f}"),
    ("driver_idle_ms_per_result", "of which Ray at rest (ms)", "{:.1f}"),
    ("snapshots", "snapshots", "{:d}"),
    ("ray_processes_ms_total_per_result", "Ray's other processes CPU / result (ms)", "{:.0f}"),
    ("machine_busy_share", "machine busy", "{:.2f}"),
    ("snapshot_ms_per_result", "snapshot writes / result (ms)", "{:.1f}"),
    ("driver_peak_rss_mb", "driver peak RSS (MB)", "{:.0f}"),
    ("suggest_ms_first", "suggest, first 10% (ms)", "{:.1f}"),
    ("suggest_ms_last", "suggest, last 10% (ms)", "{:.1f}"),
    ("end_files_s", "trials.csv + TB + report (s)", "{:.1f}"),
    ("folder_mb", "folder (MB)", "{:.0f}"), ("asha_share", "epochs run / all", "{:.2f}"),
    ("best_found", "best found", "{:.4f}"), ("best_if_all_ran", "best, all to the end", "{:.4f}"),
]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        if r.get("skipped") or r.get("error"):
            why = r.get("skipped") or r.get("error")
            lines.append(f"| {r['trials']} | {r['concurrency']} | {r.get('raylets', 1)} | "
                         f"{why} |" + " |" * (len(COLUMNS) - 4))
            continue
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append("" if v is None else fmt.format(int(v) if "d" in fmt else v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_grid(args) -> int:
    import pandas as pd

    rows = []
    cells = [(t, c, 1) for t in args.trials for c in args.concurrency]
    cells += [(t, c, r) for t, c, r in args.extra]
    for trials, concurrency, raylets in cells:
        cmd = [sys.executable, __file__, "cell", "--trials", str(trials), "--concurrency",
               str(concurrency), "--raylets", str(raylets), "--epoch-seconds",
               str(args.epoch_seconds), "--checkpoint-kb", str(args.checkpoint_kb),
               "--checkpoint-every-s", str(args.checkpoint_every_s),
               "--sampler", args.sampler, "--reduction-factor", str(args.reduction_factor),
               "--memory-floor-mb", str(args.memory_floor_mb), "--curves", args.curves]
        print(f"cell {trials} trials x {concurrency} at once on {raylets} raylet(s) ...",
              flush=True)
        t0 = time.time()
        workers = min(trials, concurrency)
        need, avail = workers * args.worker_mb + args.memory_floor_mb, MemoryWatch.available_mb()
        if need > avail:
            rows.append({"trials": trials, "concurrency": concurrency, "raylets": raylets,
                         "skipped": f"did not fit: {workers} workers need ~{need / 1024:.0f} GiB, "
                                    f"{avail / 1024:.0f} GiB available"})
            print(f"  {rows[-1]['skipped']}", flush=True)
            continue
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if lines and "did_not_fit" in lines[-1]:
            row = {"trials": trials, "concurrency": concurrency, "raylets": raylets,
                   "skipped": "did not fit: " + json.loads(lines[-1])["did_not_fit"]}
        elif proc.returncode == 0 and lines:
            row = json.loads(lines[-1])
        else:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            row = {"trials": trials, "concurrency": concurrency, "raylets": raylets,
                   "error": f"failed (exit {proc.returncode}): {' / '.join(tail)[:300]}"}
        rows.append(row)
        print(f"  {time.time() - t0:.0f} s: " + json.dumps(
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
            flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print(markdown(rows))
    print(f"table: {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--epoch-seconds", type=float, default=2.0,
                       help="each surrogate epoch sleeps this long (a GPU epoch of FER2013: seconds)")
        p.add_argument("--checkpoint-kb", type=int, default=256, help="each checkpoint's size")
        p.add_argument("--checkpoint-every-s", type=float, default=0.0,
                       help="search.checkpoint: a trial checkpoints at most this often "
                            "(0: every epoch)")
        p.add_argument("--sampler", default="tpe")
        p.add_argument("--reduction-factor", type=int, default=2)
        p.add_argument("--curves", default=str(CURVES), help="recorded curves (record_curves.py)")
        p.add_argument("--memory-floor-mb", type=int, default=2048,
                       help="stop a cell when less memory than this is available")

    grid = sub.add_parser("grid", help="every cell, each in its own process; a table at the end")
    grid.add_argument("--trials", type=lambda s: [int(x) for x in s.split(",")],
                      default=[100, 300, 1000])
    grid.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                      default=[16, 64, 256])
    grid.add_argument("--extra", type=lambda s: [tuple(int(v) for v in c.split("x"))
                                                 for c in s.split(",")], default=[],
                      help="more cells as TRIALSxCONCURRENCYxRAYLETS, e.g. 1000x64x4")
    grid.add_argument("--out", default=str(HERE / "scale.csv"))
    grid.add_argument("--worker-mb", type=int, default=110,
                      help="memory one idle Ray worker holds here (measured: ~100 MB); a cell "
                           "whose workers would not fit is skipped, not started")
    common(grid)
    cell = sub.add_parser("cell", help="one cell; prints its figures as one JSON line")
    cell.add_argument("--trials", type=int, required=True)
    cell.add_argument("--concurrency", type=int, required=True)
    cell.add_argument("--raylets", type=int, default=1)
    cell.add_argument("--workdir", default=None, help="where the experiment folder goes (/tmp)")
    cell.add_argument("--keep", action="store_true", help="keep the experiment folder")
    cell.add_argument("--profile", help="cProfile the driver's fit (main-thread CPU time) into this text file")
    common(cell)
    idle = sub.add_parser("idle", help="CPU of idle Ray actors (what N trial workers cost the "
                                       "machine while they wait)")
    idle.add_argument("--actors", type=int, default=64)
    idle.add_argument("--seconds", type=float, default=20.0)
    idle.add_argument("--job-env", action="store_true",
                      help="hand the workers a variable through a job runtime_env (as a search "
                           "on a cluster does) instead of the environment (a local search)")
    args = parser.parse_args(argv)
    if args.command == "idle":
        print(json.dumps(idle_actors(args.actors, args.seconds, args.job_env)), flush=True)
        return 0
    if not Path(args.curves).is_file():
        print(f"error: {args.curves} is missing; run bench/record_curves.py first", file=sys.stderr)
        return 2
    if args.command == "grid":
        return run_grid(args)
    print(json.dumps(run_cell(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
