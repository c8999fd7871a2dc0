"""FER2013 loading: the Kaggle CSV (plain or gzipped) and the image-folder layout.

A well-formed Kaggle CSV is read by :mod:`fer_models.fast_csv` (ISA-L + pyarrow, the full
35,887-row file in a few seconds); anything else is parsed carefully here, vectorised over the
whole file. The result is cached as an uncompressed ``.npz`` keyed by the source's path, size
and mtime, so later loads take a fraction of a second and a changed source is re-parsed. Every
problem in the input raises :class:`DataError` naming the file, the line and what is wrong;
nothing is dropped.

Example (a nine-row file in the Kaggle layout):
    >>> import tempfile
    >>> usage = ["Training"] * 7 + ["PublicTest", "PrivateTest"]
    >>> rows = [f"{i % 7},{' '.join(['128'] * 2304)},{u}" for i, u in enumerate(usage)]
    >>> path = Path(tempfile.mkdtemp()) / "fer2013.csv"
    >>> _ = path.write_text("\\n".join(["emotion,pixels,Usage", *rows]) + "\\n")
    >>> data = load_fer2013(path, use_cache=False)
    >>> data.train.images.shape, data.train.images.dtype, len(data.private_test)
    ((7, 48, 48), dtype('uint8'), 1)
"""
from __future__ import annotations

import gzip
import hashlib
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import fast_csv
from .constants import EMOTIONS, IMAGE_SIZE, NUM_PIXELS, REQUIRED_COLUMNS, SPLITS
from .textfiles import require_regular_file

__all__ = ["EMOTIONS", "SPLITS", "IMAGE_SIZE", "NUM_PIXELS", "REQUIRED_COLUMNS", "DataError",
           "Split", "FER2013", "load_fer2013"]

_CACHE_FORMAT = 1  # bump when the cached layout changes
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class DataError(ValueError):
    """Malformed or missing FER2013 input. The message names the file and, where known, the line."""


@dataclass(frozen=True)
class Split:
    """One FER2013 split: ``images`` (N, 48, 48) uint8 and ``labels`` (N,) int64 in 0..6."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(EMOTIONS)).tolist()


@dataclass(frozen=True)
class FER2013:
    """The three FER2013 splits. ``private_test`` is None in the copy handed to search trials."""

    train: Split
    public_test: Split
    private_test: Split | None
    source: str = ""

    def without_private_test(self) -> "FER2013":
        """The data a search trial may see: PrivateTest is removed, not merely unused."""
        return FER2013(self.train, self.public_test, None, self.source)

    def split(self, usage: str) -> Split | None:
        """The split named by its ``Usage`` value (Training, PublicTest, PrivateTest)."""
        return {"Training": self.train, "PublicTest": self.public_test,
                "PrivateTest": self.private_test}[usage]

    def require(self, needs: dict[str, str]) -> None:
        """DataError unless every split named in ``needs`` (Usage -> what it is needed for) has
        rows: checked before any compute, so a file lacking a split never starts a search.

        >>> empty = Split(np.zeros((0, 48, 48), np.uint8), np.zeros(0, np.int64))
        >>> FER2013(empty, empty, None, "x.csv").require({"PublicTest": "validation"})
        Traceback (most recent call last):
            ...
        fer_models.data.DataError: x.csv: no PublicTest rows (needed for validation); ...
        """
        lacking = [usage for usage in needs if not len(self.split(usage) or ())]
        if lacking:
            found = ", ".join(f"{u} {len(self.split(u) or ())}" for u in SPLITS)
            raise DataError(f"{self.source}: " + "; ".join(
                f"no {u} rows (needed for {needs[u]})" for u in lacking)
                + f"; the file has {found} (Usage column)")


def load_fer2013(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True) -> FER2013:
    """Load FER2013 from a Kaggle CSV (``.csv`` / ``.csv.gz``) or an image-folder root.

    Args:
        path: ``fer2013.csv``, ``fer2013.csv.gz`` or a folder holding ``train/`` and ``test/``
            with one sub-folder per emotion and files named ``Training_*``, ``PublicTest_*``,
            ``PrivateTest_*``.
        cache_dir: where the parsed ``.npz`` goes (default ``$FER_CACHE_DIR`` or
            ``~/.cache/fer_models``); the source folder may be read-only.
        use_cache: read and write the cache.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. FER2013 comes from the Kaggle challenge "
                        "'Challenges in Representation Learning: Facial Expression Recognition' "
                        "(fer2013.csv); pass its path with --data or put it at data/fer2013.csv.")
    if not path.is_dir():  # a FIFO or a device would block the hash and the parse
        require_regular_file(path, error=DataError)
    cache_file = _cache_path(path, cache_dir) if use_cache else None
    if cache_file is not None and cache_file.exists():
        cached = _read_cache(cache_file)
        if cached is not None:
            return _to_dataset(*cached, source=str(path))
    if path.is_dir():
        images, labels, usage = _parse_image_folder(path)
    else:
        images, labels, usage = _parse_csv(path)
    if cache_file is not None:
        _write_cache(cache_file, images, labels, usage)
    return _to_dataset(images, labels, usage, source=str(path))


# --- CSV ---------------------------------------------------------------------------------------

def _read_table(path: Path):
    import pandas as pd

    try:
        # Plain strings, no NA guessing: validation below must see exactly what the file holds.
        try:  # pyarrow's multithreaded reader is 2x faster; the C engine names the bad line
            df = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
        except Exception:
            with warnings.catch_warnings():
                # index_col=False: an extra field in the first row must not become an index;
                # pandas only warns about it, which here is an error.
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header 'emotion,pixels,Usage' "
                        "and one row per image)") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
        raise _field_count_error(path) or DataError(
            f"{path}: malformed CSV: {_short(str(e))}".replace("\n", " ")) from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: cannot read the file ({e}); is the gzip file truncated?") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(str, df.columns))} (expected {', '.join(REQUIRED_COLUMNS)})")
    if len(df) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return df


def _field_count_error(path: Path) -> DataError | None:
    """The first row whose field count differs from the header's (error path only)."""
    import csv

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", errors="replace", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for row in reader:
                if row and len(row) != len(header):
                    return DataError(f"{path} line {reader.line_num}: has {len(row)} fields, "
                                     f"expected {len(header)} ({','.join(header)})")
    except (OSError, EOFError, zlib.error, csv.Error):
        return None
    return None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _line_numbers(path: Path) -> list[int]:
    """Physical line number of each data row. The CSV readers skip blank lines, so row + 2 can
    be wrong; only error messages need this, so the file is re-read only then."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as f:
        return [i for i, line in enumerate(f, start=1) if i > 1 and line.strip()]


def _fail_rows(path: Path, rows: np.ndarray, what: str) -> DataError:
    rows = np.asarray(rows)
    try:
        lines = _line_numbers(path)
        line = lambda r: lines[r] if r < len(lines) else r + 2  # noqa: E731
    except (OSError, EOFError, zlib.error):
        line = lambda r: r + 2  # noqa: E731
    more = f" ({len(rows) - 1} more row(s) like it, e.g. line(s) " \
           f"{', '.join(str(line(int(r))) for r in rows[1:4])})" if len(rows) > 1 else ""
    return DataError(f"{path} line {line(int(rows[0]))}: {what}{more}")


def _parse_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parsed = fast_csv.read_fer2013_csv(path)  # the strict Kaggle layout, fast
    return parsed if parsed is not None else _parse_csv_careful(path)


def _parse_csv_careful(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any CSV pandas reads, validated row by row in bulk; errors name the line."""
    df = _read_table(path)
    n = len(df)
    labels = _parse_labels(path, df["emotion"].to_numpy(dtype=object))
    usage = _parse_usage(path, df["Usage"].to_numpy(dtype=object))
    images = _parse_pixels(path, df["pixels"].to_numpy(dtype=object), n)
    return images, labels, usage


def _parse_labels(path: Path, raw: np.ndarray) -> np.ndarray:
    import pandas as pd

    stripped = pd.Series(raw).str.strip()
    ok = stripped.str.fullmatch(r"[0-9]{1,9}").to_numpy()  # ASCII digits; no int64 overflow
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise _fail_rows(path, bad, f"emotion {_short(repr(raw[bad[0]]))} is not an integer label 0..6")
    labels = stripped.astype(np.int64).to_numpy()
    out = (labels < 0) | (labels >= len(EMOTIONS))
    if out.any():
        bad = np.flatnonzero(out)
        raise _fail_rows(path, bad, f"emotion {labels[bad[0]]} is outside 0..6 "
                                    f"({', '.join(f'{i}={e}' for i, e in enumerate(EMOTIONS))})")
    return labels


def _parse_usage(path: Path, raw: np.ndarray) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(SPLITS)}
    codes = np.array([lookup.get(str(u).strip(), -1) for u in raw], dtype=np.int8)
    if (codes < 0).any():
        bad = np.flatnonzero(codes < 0)
        raise _fail_rows(path, bad, f"Usage {_short(repr(raw[bad[0]]))} is not one of {', '.join(SPLITS)}")
    return codes


def _parse_pixels(path: Path, raw: np.ndarray, n: int) -> np.ndarray:
    # One string, one pass of numpy's C integer parser; rows are counted by str.count in C.
    # Every check is per row or per array, never a Python loop over the 82 million pixel values.
    # (Threads were tried: page faults on the big buffers serialise them, so they were slower.)
    values = _parse_chunk(raw)
    counts = np.array([_token_count(row) for row in raw])
    if values is None:  # a token numpy could not read: find and name it
        bad = np.array([i for i, row in enumerate(raw) if not _is_digit_row(row)])
        row = str(raw[bad[0]])
        token = next((t for t in row.split() if not (t.isdigit() and t.isascii())), None)
        if token is None:  # digits between non-ASCII spaces, which str.split() splits on
            char = next(c for c in row if not c.isascii())
            raise _fail_rows(path, bad, f"pixels hold the non-ASCII character {char!r}; "
                                        "separate values with plain spaces")
        raise _fail_rows(path, bad, f"pixel value {_short(repr(token), 40)} is not a non-negative integer")
    wrong = np.flatnonzero(counts != NUM_PIXELS)
    if len(wrong):
        raise _fail_rows(path, wrong, f"pixels has {counts[wrong[0]]} values, expected "
                                      f"{NUM_PIXELS} (48x48)")
    if values.size != n * NUM_PIXELS:  # defensive: the checks above should make this impossible
        raise DataError(f"{path}: parsed {values.size} pixel values, expected {n * NUM_PIXELS}")
    big = (values > 255) | (values < 0)
    if big.any():
        flat = np.flatnonzero(big)
        rows = np.unique(flat // NUM_PIXELS)
        token = str(raw[flat[0] // NUM_PIXELS]).split()[flat[0] % NUM_PIXELS]  # as written
        raise _fail_rows(path, rows, f"pixel value {_short(token, 40)} (pixel {flat[0] % NUM_PIXELS}) "
                                     "is outside 0..255")
    return values.astype(np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def _parse_chunk(rows: np.ndarray) -> np.ndarray | None:
    """Integers of space-separated rows, or None when a token is not an integer."""
    with warnings.catch_warnings():
        # numpy warns (and stops early) at the first token it cannot read as an integer.
        warnings.simplefilter("error", DeprecationWarning)
        try:
            joined = " ".join(rows)
            if not joined.isascii():  # numpy and str.split() disagree on non-ASCII spaces
                return None
            values = np.fromstring(joined, dtype=np.int64, sep=" ")  # noqa: NPY201
        except (DeprecationWarning, ValueError):
            return None
    if any(not _is_digit_row(r) for r in rows if "-" in r or "+" in r):  # sign chars parse as ints
        return None
    return values


def _is_digit_row(row: str) -> bool:
    return row.isascii() and all(t.isdigit() for t in row.split())


def _token_count(row: str) -> int:
    # The usual single-spaced row is counted by str.count in C; anything else by split().
    if "  " in row or "\t" in row or row[:1] == " " or row[-1:] == " ":
        return len(row.split())
    return row.count(" ") + 1 if row else 0


# --- image folders -----------------------------------------------------------------------------

def _parse_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    class_index = {name.lower(): i for i, name in enumerate(EMOTIONS)}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no image files found (expected train|test/<emotion>/"
                        "Training_*.jpg, PublicTest_*.jpg, PrivateTest_*.jpg)")
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    usage = np.empty(len(files), dtype=np.int8)
    for i, f in enumerate(files):
        label = class_index.get(f.parent.name.lower())
        if label is None:
            raise DataError(f"{f}: folder {f.parent.name!r} is not an emotion "
                            f"({', '.join(e.lower() for e in EMOTIONS)})")
        split = next((j for j, s in enumerate(SPLITS) if f.name.startswith(s + "_")), None)
        if split is None:
            raise DataError(f"{f}: file name must start with one of "
                            f"{', '.join(s + '_' for s in SPLITS)}")
        try:
            with Image.open(f) as im:
                im = im.convert("L")
                if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                    raise DataError(f"{f}: image is {im.size[0]}x{im.size[1]}, expected 48x48")
                images[i] = np.asarray(im)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{f}: not a readable image ({e})") from None
        labels[i], usage[i] = label, split
    return images, labels, usage


# --- cache -------------------------------------------------------------------------------------

def _cache_path(source: Path, cache_dir) -> Path:
    cache_dir = Path(cache_dir or os.environ.get("FER_CACHE_DIR")
                     or Path.home() / ".cache" / "fer_models")
    st = source.stat()
    if source.is_dir():  # a folder changes when any file in it does: key on the newest mtime
        mtimes = [p.stat().st_mtime_ns for p in source.rglob("*")]
        st_key = f"{len(mtimes)}:{max(mtimes, default=0)}"
    else:
        st_key = f"{st.st_size}:{st.st_mtime_ns}"
    key = hashlib.sha256(f"{source.resolve()}|{st_key}|{_CACHE_FORMAT}".encode()).hexdigest()[:16]
    return cache_dir / f"{source.name}.{key}.npz"


def _read_cache(cache_file: Path):
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            return z["images"], z["labels"], z["usage"]
    except Exception:  # a corrupt or partial cache is just a miss
        return None


def _write_cache(cache_file: Path, images, labels, usage) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, images=images, labels=labels, usage=usage)
        os.replace(tmp, cache_file)  # atomic: a reader never sees half a file
    except OSError:
        pass  # an unwritable cache only costs speed


def _to_dataset(images, labels, usage, source: str) -> FER2013:
    def split(code: int) -> Split:
        idx = np.flatnonzero(usage == code)
        return Split(np.ascontiguousarray(images[idx]), labels[idx].astype(np.int64))

    return FER2013(split(0), split(1), split(2), source=source)
