"""Benchmark FER2013 loading: a full CSV parse versus a load from the .npz parse cache.

    .venv/bin/python bench/bench_data.py          # $FER_DATA_DIR or ../shared/data, fer2013.csv.gz
    .venv/bin/python bench/bench_data.py --data data/fer2013.csv --repeats 5

Each measurement runs ``--repeats`` times (default 3) in this one process; the medians are printed
and the last line is machine-readable:

    RESULT parse_s=<median seconds, use_cache=False> cached_load_s=<median seconds, cache hit>

The cache goes to a temporary folder (deleted afterwards) unless --cache-dir is given, so the run
neither reads nor writes ~/.cache/fer_models.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_models.data import load_fer2013  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data") / "fer2013.csv.gz"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help=f"FER2013 CSV (.csv/.csv.gz) or image-folder root (default {DEFAULT_DATA})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", help="parse cache folder (default: a temporary one)")
    args = parser.parse_args(argv)

    path = Path(args.data)
    if not path.exists():
        print(f"error: {path} does not exist (pass --data)", file=sys.stderr)
        return 2
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="fer_bench_"))
    try:
        size_mb = path.stat().st_size / 2**20 if path.is_file() else float("nan")
        print(f"data: {path} ({size_mb:.1f} MiB)  cache: {cache_dir}  repeats: {args.repeats}")

        parse = []
        for i in range(args.repeats):
            seconds, data = timed(lambda: load_fer2013(path, use_cache=False))
            parse.append(seconds)
            rows = len(data.train) + len(data.public_test) + len(data.private_test or ())
            print(f"  parse   #{i + 1}: {seconds:7.3f} s  ({rows} rows, {rows / seconds:,.0f} rows/s)")

        first, _ = timed(lambda: load_fer2013(path, cache_dir=cache_dir))  # parse + write the cache
        print(f"  first cached load (parse + write .npz): {first:.3f} s")
        cached = []
        for i in range(args.repeats):
            seconds, again = timed(lambda: load_fer2013(path, cache_dir=cache_dir))
            cached.append(seconds)
            print(f"  cached  #{i + 1}: {seconds:7.3f} s")
        assert len(again.train) == len(data.train)  # the cache returned the same data

        parse_s, cached_s = statistics.median(parse), statistics.median(cached)
        print(f"median parse {parse_s:.3f} s, median cached load {cached_s:.3f} s "
              f"({parse_s / cached_s:.0f}x faster)")
        print(f"RESULT parse_s={parse_s:.4f} cached_load_s={cached_s:.4f}")
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
