"""Shared fixtures: where the FER2013 files are, a per-session parse cache, a CSV writer.

The data is never copied into the repository: it is read from ``../shared/data`` (relative to the
repository root) or from ``$FER_DATA_DIR``. Tests that need it are skipped with the reason when it
is missing, except where ``FER_REQUIRE_DATA=1`` (``.ci/run`` sets it): there a missing file fails
them, so a CI run without the data cannot pass by skipping. The parse cache goes to a temporary
folder for the session, never to ``~/.cache``.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest

# Tests never download anything (timm/Hugging Face read this when they are first imported).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that wait sleep instead of spinning, in this process and every search and Ray
# worker it starts (torch reads it when first imported): `make test` runs two test processes on
# 2 cores, and a 2-thread trial's spinning threads took CPU the other process needed (two smoke
# searches side by side: 73 s and 129 CPU-seconds spinning, 59 s and 106 sleeping).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# CI draws the same Hypothesis examples every run (a failure there is the code's, reproducible,
# not a new draw's); a developer's run explores new ones. HYPOTHESIS_PROFILE picks either.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("dev")
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                                  or ("ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
SMALL_NAME = "fer2013-small.csv.gz"
FULL_NAME = "fer2013.csv.gz"
HEADER = "emotion,pixels,Usage"


def data_dir() -> Path:
    return Path(os.environ.get("FER_DATA_DIR") or DEFAULT_DATA_DIR)


REQUIRE_DATA_ENV = "FER_REQUIRE_DATA"


def data_file(name: str) -> Path:
    """Path of a shared FER2013 file; when it is missing, skip the test saying where it was looked
    for, or fail it under FER_REQUIRE_DATA=1."""
    path = data_dir() / name
    if not path.is_file():
        reason = (f"FER2013 file {name} not found at {path} (set FER_DATA_DIR to the folder "
                  f"holding {SMALL_NAME} / {FULL_NAME}, default ../shared/data)")
        if os.environ.get(REQUIRE_DATA_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV}=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    return path


def pixels_text(pixels) -> str:
    """2304 integers as the Kaggle file writes them: space separated."""
    return " ".join(str(int(v)) for v in np.asarray(pixels).reshape(-1))


def write_csv(path: str | os.PathLike, rows: Iterable, header: str | None = HEADER,
              gz: bool = False) -> Path:
    """Write a Kaggle-format CSV and return its path.

    Each row is either a ready line (``str``) or a sequence of fields (label, pixels, usage, ...);
    a field that is an array/list of numbers is written as space-separated integers. ``header=None``
    writes no header line. ``gz=True`` gzip-compresses the file (the name is kept as given).
    """
    lines = [] if header is None else [header]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
        else:
            fields = []
            for field in row:
                if isinstance(field, (np.ndarray, list, tuple)):
                    fields.append(pixels_text(field))
                else:
                    fields.append(str(field))
            lines.append(",".join(fields))
    text = "\n".join(lines) + ("\n" if lines else "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="session", autouse=True)
def fer_cache_dir(tmp_path_factory) -> Path:
    """Point FER_CACHE_DIR at a temporary folder for the whole session (restored afterwards)."""
    cache = tmp_path_factory.mktemp("fer_cache")
    old = os.environ.get("FER_CACHE_DIR")
    os.environ["FER_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("FER_CACHE_DIR", None)
    else:
        os.environ["FER_CACHE_DIR"] = old


# Intra-op threads for the torch work in these tests. 1 by default: on a 2-core machine that is also
# running something else (a search, another test process), 2 OpenMP threads spin-wait on each other
# and a tiny model's epoch took 25x longer (8 s instead of 0.3 s); with nothing else running, 1 thread
# costs these tiny models little. FER_TEST_THREADS overrides it.
TEST_THREADS = int(os.environ.get("FER_TEST_THREADS", "1"))


@pytest.fixture(scope="module")
def torch_threads():
    """Run a module's torch work on TEST_THREADS threads; restore torch's setting afterwards
    (``fit(threads=...)`` changes it for the whole process)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield TEST_THREADS
    torch.set_num_threads(before)


@pytest.fixture(scope="session", name="write_csv")
def write_csv_fixture():
    """The :func:`write_csv` helper, as a fixture (session scoped, so hypothesis tests may use it)."""
    return write_csv


@pytest.fixture(scope="session")
def small_csv() -> Path:
    """The 2,100/349/350-row stratified sample of FER2013 (gzipped Kaggle CSV)."""
    return data_file(SMALL_NAME)


def training_subset(small_csv: Path, path: Path, every: int) -> Path:
    """Every ``every``-th row of the small sample where that row is a Training one, both
    held-out splits whole: for searches whose point is what the search does, not what the trials
    learn. Written to ``path`` (a temporary folder: never into the repository)."""
    with gzip.open(small_csv, "rt") as f:
        lines = f.read().splitlines()
    kept = [lines[0]] + [ln for i, ln in enumerate(lines[1:])
                         if not ln.endswith("Training") or i % every == 0]
    path.write_text("\n".join(kept) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_csv(small_csv, tmp_path_factory) -> Path:
    """300/349/350 rows: an epoch of resnet10t takes ~2 s on one core, not ~12 s."""
    return training_subset(small_csv, tmp_path_factory.mktemp("data") / "fer2013-tiny.csv", 7)


@pytest.fixture(scope="session")
def tiny_data(tiny_csv, fer_cache_dir):
    """The tiny sample, loaded once per session."""
    from fer_models.data import load_fer2013

    return load_fer2013(tiny_csv)


@pytest.fixture(scope="session")
def full_csv() -> Path:
    return data_file(FULL_NAME)


@pytest.fixture(scope="session")
def small_data(small_csv, fer_cache_dir):
    """The small sample, loaded once per session."""
    from fer_models.data import load_fer2013

    return load_fer2013(small_csv)


@pytest.fixture(scope="session")
def smoke_experiment(tmp_path_factory, fer_cache_dir, tiny_csv):
    """(CompletedProcess, experiment folder) of the smoke search on the tiny sample, run once
    per test session and shared by the end-to-end, report and TensorBoard tests."""
    import subprocess
    import sys

    data = tiny_csv
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("results")
    proc = subprocess.run(
        [sys.executable, "-m", "search.run", "spaces/smoke.yaml", "--data", str(data),
         "--output", str(out), "--name", "smoke",  # default verbosity: the console is tested
         # The smoke run also exercises the ensemble and the duplicate filter (no extra epochs:
         # the two retrains run side by side).
         "--top-k", "2", "--drop-duplicates"],
        cwd=repo, capture_output=True, text=True, timeout=1500, env={**os.environ})
    return proc, out / "smoke"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist's ``--dist loadgroup`` (``make test``), a file's tests share one worker
    unless the file or test names its own ``xdist_group``: a module- or session-scoped search
    then runs once, not once per worker.

    Groups holding a ``slow`` test (a real search) come first: xdist hands groups out in the
    order collected (``make test`` passes ``--no-loadscope-reorder``; its default puts groups with
    many tests first, leaving the single-test searches to the end, one worker running them while
    the other idles)."""
    def group(item) -> str:
        marker = item.get_closest_marker("xdist_group")
        if marker is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            marker = item.get_closest_marker("xdist_group")
        return marker.args[0] if marker.args else marker.kwargs.get("name", "")

    groups = {id(item): group(item) for item in items}
    slow = {groups[id(item)] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: groups[id(item)] not in slow)  # stable: collection order within
