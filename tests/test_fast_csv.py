"""fer_models.fast_csv: the fast reader accepts only the strict Kaggle layout, and what it returns
equals the careful parser's result; everything else goes the careful way (with its messages)."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from fer_models import data as fer_data
from fer_models.data import SPLITS, DataError, load_fer2013
from fer_models.fast_csv import read_fer2013_csv
from tests.conftest import pixels_text, write_csv


def assert_same(fast, careful):
    for got, want in zip(fast, careful):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def rows(n: int = 7, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, 2304, dtype=np.uint8)
        pixels[:2] = (0, 255)[i % 2], 7  # the first and last tokens carry the label / usage
        pixels[-1] = (255, 0, 9)[i % 3]
        out.append(f"{i % 7},{pixels_text(pixels)},{SPLITS[i % 3]}")
    return out


def test_real_sample_equals_careful_parse(small_csv):
    fast = read_fer2013_csv(small_csv)
    assert fast is not None, "the Kaggle sample is well-formed: the fast path must take it"
    assert fast[0].shape == (2799, 48, 48)
    assert_same(fast, fer_data._parse_csv_careful(small_csv))


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_strict_layout_is_read_fast_and_exactly(tmp_path, gz, newline):
    lines = rows()
    text = newline.join(["emotion,pixels,Usage", *lines[:3], "", *lines[3:]]) + newline
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    fast = read_fer2013_csv(path)
    assert fast is not None
    assert fast[0].shape == (7, 48, 48)  # the blank line is skipped, as the careful path does
    assert_same(fast, fer_data._parse_csv_careful(path))


GOOD = rows(3)
LEFT_TO_CAREFUL = {
    # name: (file lines, does the careful parser accept it?)
    "hex_pixel": ([GOOD[0], GOOD[1].replace(" ", " 0x1F ", 1)], False),  # pyarrow reads 0x1F
    "hex_upper": ([GOOD[0].replace(" ", " 0X1 ", 1)], False),
    "double_space": ([GOOD[0].replace(" ", "  ", 1)], True),
    "trailing_space": ([GOOD[0].replace(",Training", " ,Training")], True),
    "quoted_pixels": ([GOOD[0].replace(",", ',"', 1).replace(",Training", '",Training')], True),
    "leading_zero_edge_pixel": ([GOOD[0].replace(",", ",007 ", 1).replace(" 7 ", " ", 1)], True),
    "label_with_zero": (["0" + GOOD[0]], True),
    "usage_with_space": ([GOOD[0].replace(",Training", ", Training")], True),
    "pixel_256": ([GOOD[0], GOOD[1].replace(" ", " 256 ", 1)], False),
    "plus_sign": ([GOOD[0].replace(" ", " +4 ", 1)], False),
    "short_row": ([GOOD[0].rsplit(" ", 2)[0] + ",Training"], False),
    "label_7": (["7" + GOOD[0][1:]], False),
    "extra_field": ([GOOD[0] + ",oops"], False),
}


@pytest.mark.parametrize("case", sorted(LEFT_TO_CAREFUL))
def test_anything_unusual_is_left_to_the_careful_parser(tmp_path, case):
    lines, valid = LEFT_TO_CAREFUL[case]
    path = write_csv(tmp_path / f"{case}.csv", lines)
    assert read_fer2013_csv(path) is None
    if valid:
        data = load_fer2013(path, use_cache=False)
        assert len(data.train) + len(data.public_test) + len(data.private_test) == len(lines)
    else:
        with pytest.raises(DataError, match=r"line \d+"):
            load_fer2013(path, use_cache=False)


@pytest.mark.parametrize("header", ["Usage,pixels,emotion", "\ufeffemotion,pixels,Usage",
                                    "emotion,pixels,Usage,extra"])
def test_other_headers_are_left_to_the_careful_parser(tmp_path, header):
    path = write_csv(tmp_path / "h.csv", GOOD, header=header)
    assert read_fer2013_csv(path) is None


@pytest.mark.parametrize("content", [b"", b"emotion,pixels,Usage\n", b"\x1f\x8b\x08garbage"])
def test_empty_or_broken_files_are_left_to_the_careful_parser(tmp_path, content):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(content)
    assert read_fer2013_csv(path) is None
    with pytest.raises(DataError, match="broken.csv.gz"):
        load_fer2013(path, use_cache=False)


def test_corrupt_deflate_stream_is_a_data_error(tmp_path):
    """A damaged gzip body (isal raises its own error type) goes the careful way: a DataError."""
    good = gzip.compress(("emotion,pixels,Usage\n" + "\n".join(GOOD) + "\n").encode())
    path = tmp_path / "damaged.csv.gz"
    path.write_bytes(good[:30] + bytes(30) + good[60:])
    assert read_fer2013_csv(path) is None
    with pytest.raises(DataError, match="damaged.csv.gz"):
        load_fer2013(path, use_cache=False)


def test_small_files_read_fast_on_many_cores(tmp_path, monkeypatch):
    """Blocks never get smaller than a few rows, whatever the core count."""
    path = tmp_path / "many.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows(9)) + "\n")
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    fast = read_fer2013_csv(path)
    assert fast is not None and fast[0].shape == (9, 48, 48)
    assert_same(fast, fer_data._parse_csv_careful(path))
