"""A fast reader for the well-formed Kaggle ``fer2013.csv``; anything unusual is left to data.py.

The file is ~300 MB of text holding 82.7 million pixel values. The reader decompresses with ISA-L
(``isal``, ~3x faster than zlib; plain ``gzip`` when it is missing), then lets pyarrow's
multithreaded CSV parser split every row on spaces straight into uint8 columns: with the space as
delimiter a row ``3,70 80 ... 82,Training`` is 2304 tokens, the label glued to the first pixel and
the usage to the last. Those two tokens are split on their comma afterwards.

It accepts only the strict layout (header ``emotion,pixels,Usage``, single spaces, labels 0-6,
pixels 0-255 written in decimal, usage one of the three split names) and returns None for
anything else, including every malformed file: ``data._parse_csv`` then parses the file the careful
way and names the bad line. So when this returns arrays they equal the careful parser's.

Example (the strict layout is read; a quoted field is left to the careful parser):
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> pixels = " ".join(["7"] * 2304)
    >>> _ = (folder / "ok.csv").write_text(f"emotion,pixels,Usage\\n3,{pixels},Training\\n")
    >>> images, labels, usage = read_fer2013_csv(folder / "ok.csv")
    >>> images.shape, images.dtype, labels.tolist(), usage.tolist()
    ((1, 48, 48), dtype('uint8'), [3], [0])
    >>> _ = (folder / "quoted.csv").write_text(f'emotion,pixels,Usage\\n3,"{pixels}",Training\\n')
    >>> read_fer2013_csv(folder / "quoted.csv") is None
    True
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from .constants import EMOTIONS, IMAGE_SIZE, NUM_PIXELS, REQUIRED_COLUMNS, SPLITS

HEADER = ",".join(REQUIRED_COLUMNS).encode()  # emotion,pixels,Usage, in this order only

try:  # ISA-L's gzip: same format, a few times faster than zlib
    from isal.igzip import decompress as _gunzip
except ImportError:  # pragma: no cover - isal is a dependency, but the reader works without it
    _gunzip = gzip.decompress


def read_fer2013_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(images, labels, usage)`` of a strictly well-formed FER2013 CSV, or None otherwise."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:  # pragma: no cover - pandas' optional engine; the careful path remains
        return None
    try:
        with open(path, "rb") as f:
            text = f.read()
        if str(path).endswith(".gz"):
            text = _gunzip(text)
    except Exception:  # noqa: BLE001 - isal raises its own IsalError on a corrupt stream; the
        return None    # careful path re-reads the file and reports what is wrong
    end = text.find(b"\n")
    if end < 0 or text[:end].rstrip(b"\r") != HEADER:
        return None
    body = memoryview(text)[end + 1:]
    # pyarrow reads integers written as 0x.. in hex; FER2013 never has an x after its header.
    if not body or text.find(b"x", end) >= 0 or text.find(b"X", end) >= 0:
        return None
    names = [f"t{i}" for i in range(NUM_PIXELS)]
    types = {name: pa.uint8() for name in names}  # > 255, signs, blanks: a conversion error
    types[names[0]] = types[names[-1]] = pa.string()
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            # A few blocks per core keep the threads evenly busy (2 blocks on 2 cores: 3.2 s,
            # 8 blocks: 2.4 s); each block becomes one chunk of every column. At least 1 MiB
            # (pyarrow's default): a row (~8 KB) must not straddle more than two blocks.
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=True,
                block_size=max(len(body) // (4 * (os.cpu_count() or 1)) + 1, 1 << 20)),
            parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[],
                                                 strings_can_be_null=False))
    except (pa.ArrowException, ValueError):  # wrong token count, bad value: the careful path
        return None
    n = table.num_rows
    first = _comma_pair(pc, table.column(0))   # "label,first pixel"
    last = _comma_pair(pc, table.column(NUM_PIXELS - 1))  # "last pixel,usage"
    if n == 0 or first is None or last is None:
        return None
    labels = _lookup(first[0], [str(i) for i in range(len(EMOTIONS))])
    usage = _lookup(last[1], SPLITS)
    first_pixel, last_pixel = _pixel(first[1]), _pixel(last[0])
    if labels is None or usage is None or first_pixel is None or last_pixel is None:
        return None
    # Column-major fill (each column's chunks are contiguous), then one transpose to rows.
    columns = np.empty((NUM_PIXELS, n), dtype=np.uint8)
    columns[0], columns[-1] = first_pixel, last_pixel
    for j in range(1, NUM_PIXELS - 1):
        start = 0
        for chunk in table.column(j).chunks:
            columns[j, start:start + len(chunk)] = chunk.to_numpy(zero_copy_only=True)
            start += len(chunk)
    # Transposed 64 columns at a time: each image row gets 64 contiguous bytes per write (twice
    # as fast as one np.ascontiguousarray(columns.T)).
    images = np.empty((n, NUM_PIXELS), dtype=np.uint8)
    for j in range(0, NUM_PIXELS, 64):
        images[:, j:j + 64] = columns[j:j + 64].T
    images = images.reshape(n, IMAGE_SIZE, IMAGE_SIZE)
    return images, labels.astype(np.int64), usage.astype(np.int8)


def _comma_pair(pc, column) -> tuple[np.ndarray, np.ndarray] | None:
    parts = pc.split_pattern(column, ",", max_splits=1).combine_chunks()
    if pc.min(pc.list_value_length(parts)).as_py() != 2:
        return None
    flat = parts.flatten().to_numpy(zero_copy_only=False)
    return flat[0::2], flat[1::2]


def _lookup(values: np.ndarray, names) -> np.ndarray | None:
    codes = np.full(len(values), -1)
    for i, name in enumerate(names):
        codes[values == name] = i
    return None if (codes < 0).any() else codes


def _pixel(values: np.ndarray) -> np.ndarray | None:
    table = {str(v): v for v in range(256)}  # decimal without leading zeros or signs
    out = np.array([table.get(v, -1) for v in values])
    return None if (out < 0).any() else out.astype(np.uint8)
