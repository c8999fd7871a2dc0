"""Benchmark FER2013 loading: a full CSV parse versus a load from the .npz parse cache.

A parse of a well-formed Kaggle file takes the fast path (``fer_models.fast_csv``: ISA-L gunzip +
pyarrow); the careful path (pandas + numpy, what any unusual or malformed file gets) is timed
beside it, interleaved, for comparison, as is the gunzip step alone (ISA-L vs zlib).

    .venv/bin/python bench/bench_data.py          # $FER_DATA_DIR or ../shared/data, fer2013.csv.gz
    .venv/bin/python bench/bench_data.py --data data/fer2013.csv --repeats 5

Each measurement runs ``--repeats`` times (default 3) in this one process; the medians are printed
and the last line is machine-readable:

    RESULT parse_s=<median s, use_cache=False> cached_load_s=<median s, cache hit>
           careful_parse_s=<median s, the careful path> gunzip_isal_s=.. gunzip_zlib_s=..

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

import fer_models.data as fer_data  # noqa: E402
from fer_models.cli import EXIT_BAD_INPUT  # noqa: E402
from fer_models.data import load_fer2013  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("FER_DATA_DIR") or REPO.parent / "shared" / "data") / "fer2013.csv.gz"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def careful_load(path: Path):
    """load_fer2013 with the fast reader switched off: what a file outside the strict layout gets."""
    fast = fer_data._parse_csv
    fer_data._parse_csv = fer_data._parse_csv_careful
    try:
        return load_fer2013(path, use_cache=False)
    finally:
        fer_data._parse_csv = fast


def gunzip_times(path: Path, repeats: int) -> dict[str, float]:
    if path.suffix != ".gz":
        return {}
    import gzip

    from isal import igzip

    raw = path.read_bytes()
    out = {}
    for name, fn in (("isal", igzip.decompress), ("zlib", gzip.decompress)):
        out[name] = statistics.median(timed(lambda: fn(raw))[0] for _ in range(repeats))
    return out


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
        return EXIT_BAD_INPUT
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="fer_bench_"))
    try:
        size_mb = path.stat().st_size / 2**20 if path.is_file() else float("nan")
        print(f"data: {path} ({size_mb:.1f} MiB)  cache: {cache_dir}  repeats: {args.repeats}")

        parse, careful = [], []
        for i in range(args.repeats):  # interleaved, so both see the same machine state
            seconds, data = timed(lambda: load_fer2013(path, use_cache=False))
            parse.append(seconds)
            rows = len(data.train) + len(data.public_test) + len(data.private_test or ())
            print(f"  parse   #{i + 1}: {seconds:7.3f} s  ({rows} rows, {rows / seconds:,.0f} rows/s)")
            seconds, slow = timed(lambda: careful_load(path))
            careful.append(seconds)
            assert (slow.train.images == data.train.images).all()  # the same result either way
            print(f"  careful #{i + 1}: {seconds:7.3f} s")
        gunzip = gunzip_times(path, args.repeats)

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
        careful_s = statistics.median(careful)
        print(f"careful path (pandas + numpy): median {careful_s:.3f} s ({careful_s / parse_s:.2f}x the "
              "fast path)" + "".join(f"; gunzip {k} {v:.3f} s" for k, v in gunzip.items()))
        print(f"RESULT parse_s={parse_s:.4f} cached_load_s={cached_s:.4f} careful_parse_s={careful_s:.4f}"
              + "".join(f" gunzip_{k}_s={v:.4f}" for k, v in gunzip.items()))
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
