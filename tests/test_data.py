"""fer_models.data: CSV and image-folder loading, error messages, the parse cache, real data."""
from __future__ import annotations

import gzip
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_models.data import EMOTIONS, SPLITS, DataError, load_fer2013


def pixels_text(pixels) -> str:
    return " ".join(str(int(v)) for v in np.asarray(pixels).reshape(-1))


def random_rows(n: int, seed: int = 0):
    """n synthetic rows (label, pixels (48, 48) uint8, usage), cycling through all three splits."""
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, 7)), rng.integers(0, 256, (48, 48), dtype=np.uint8), SPLITS[i % 3])
            for i in range(n)]


GOOD = pixels_text(np.arange(2304) % 256)


def expected_splits(rows):
    """{usage: (images, labels)} in file order, from rows (label, pixels, usage)."""
    out = {}
    for usage in SPLITS:
        mine = [r for r in rows if r[2] == usage]
        images = np.stack([np.asarray(r[1], np.uint8).reshape(48, 48) for r in mine]) \
            if mine else np.zeros((0, 48, 48), np.uint8)
        out[usage] = (images, np.array([r[0] for r in mine], dtype=np.int64))
    return out


def assert_matches(data, rows):
    exp = expected_splits(rows)
    for usage, split in zip(SPLITS, (data.train, data.public_test, data.private_test)):
        images, labels = exp[usage]
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        assert split.images.shape == (len(labels), 48, 48)
        np.testing.assert_array_equal(split.images, images)
        np.testing.assert_array_equal(split.labels, labels)


def assert_names_line(err: Exception, path: Path, line: int | None, *fragments: str):
    msg = str(err)
    assert str(path) in msg, f"file not named in {msg!r}"
    if line is not None:
        found = [int(n) for n in re.findall(r"\bline (\d+)\b", msg)]
        assert found and found[0] == line, f"expected line {line} first in {msg!r}"
    for frag in fragments:
        assert frag.lower() in msg.lower(), f"{frag!r} not in {msg!r}"


def load_error(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load_fer2013(path, use_cache=False, **kwargs)
    return info.value


# --- round trip --------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_round_trip_all_splits(tmp_path, write_csv, gz):
    rows = random_rows(11, seed=1)
    path = write_csv(tmp_path / ("f.csv.gz" if gz else "f.csv"), rows, gz=gz)
    data = load_fer2013(path, use_cache=False)
    assert_matches(data, rows)
    assert (len(data.train), len(data.public_test), len(data.private_test)) == (4, 4, 3)
    assert data.source == str(path)


def test_round_trip_other_column_order_and_crlf(tmp_path):
    rows = random_rows(4, seed=2)
    text = "Usage,pixels,emotion\r\n" + "".join(
        f"{u},{pixels_text(p)},{label}\r\n" for label, p, u in rows)
    path = tmp_path / "reordered.csv"
    path.write_text(text, newline="")
    assert_matches(load_fer2013(path, use_cache=False), rows)


def test_extreme_pixel_values_round_trip(tmp_path, write_csv):
    rows = [(0, np.zeros(2304, np.uint8), "Training"), (6, np.full(2304, 255, np.uint8), "Training"),
            (3, np.arange(2304) % 256, "PublicTest")]
    assert_matches(load_fer2013(write_csv(tmp_path / "x.csv", rows), use_cache=False), rows)


# --- malformed input: every case names the file, the line and the problem --------------------

def _pix(tokens):
    return " ".join(tokens)


ROW_CASES = {
    # name: (bad row text, fragments the message must contain)
    "short_pixels": (f"0,{_pix(['7'] * 2303)},Training", ["2303", "2304"]),
    "long_pixels": (f"0,{_pix(['7'] * 2305)},Training", ["2305", "2304"]),
    "float_pixel": (f"0,{_pix(['7'] * 100 + ['12.5'] + ['7'] * 2203)},Training", ["'12.5'", "pixel"]),
    "text_pixel": (f"0,{_pix(['abc'] + ['7'] * 2303)},Training", ["'abc'", "pixel"]),
    "negative_pixel": (f"0,{_pix(['7'] * 2303 + ['-4'])},Training", ["-4", "pixel"]),
    "pixel_256": (f"0,{_pix(['7'] * 5 + ['256'] + ['7'] * 2298)},Training", ["256", "0..255"]),
    "pixel_1000": (f"0,{_pix(['1000'] + ['7'] * 2303)},Training", ["1000", "0..255"]),
    "label_7": (f"7,{GOOD},Training", ["emotion", "7", "0..6"]),
    "label_minus_1": (f"-1,{GOOD},Training", ["emotion", "-1"]),
    "label_float": (f"3.5,{GOOD},Training", ["emotion", "3.5"]),
    "label_text": (f"happy,{GOOD},Training", ["emotion", "happy"]),
    "label_empty": (f",{GOOD},Training", ["emotion"]),
    "unknown_usage": (f"0,{GOOD},Validation", ["usage", "Validation", "PublicTest"]),
    "usage_wrong_case": (f"0,{GOOD},training", ["usage", "training"]),
    "extra_field": (f"0,{GOOD},Training,oops", ["field"]),
    "empty_pixels": ("0,,Training", ["0 values", "2304"]),
}


def _row_case_params():
    for case in sorted(ROW_CASES):
        for bad_index, where in ((0, "first"), (2, "middle"), (4, "last")):
            yield pytest.param(case, bad_index, id=f"{case}-{where}")


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
@pytest.mark.parametrize("case,bad_index", list(_row_case_params()))
def test_malformed_row_names_file_line_and_problem(tmp_path, write_csv, case, bad_index, gz):
    bad, fragments = ROW_CASES[case]
    lines = [f"{i % 7},{GOOD},{SPLITS[i % 3]}" for i in range(5)]
    lines[bad_index] = bad
    path = write_csv(tmp_path / ("bad.csv.gz" if gz else "bad.csv"), lines, gz=gz)
    err = load_error(path)
    assert_names_line(err, path, bad_index + 2, *fragments)  # header is line 1


def test_several_bad_rows_name_the_first_and_count_the_rest(tmp_path, write_csv):
    lines = [f"{7 if i in (3, 5, 9) else 0},{GOOD},Training" for i in range(12)]
    path = write_csv(tmp_path / "many.csv", lines)
    err = load_error(path)
    assert_names_line(err, path, 5, "2 more row(s)", "7", "11")


def test_missing_column(tmp_path, write_csv):
    path = write_csv(tmp_path / "nocol.csv", [f"0,{GOOD}"], header="emotion,pixels")
    assert_names_line(load_error(path), path, None, "missing column", "Usage")


def test_misspelled_column(tmp_path, write_csv):
    path = write_csv(tmp_path / "typo.csv", [f"0,{GOOD},Training"], header="emotion,pixel,Usage")
    assert_names_line(load_error(path), path, None, "missing column", "pixels")


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
def test_empty_file(tmp_path, gz):
    path = tmp_path / ("empty.csv.gz" if gz else "empty.csv")
    path.write_bytes(gzip.compress(b"") if gz else b"")
    assert_names_line(load_error(path), path, None, "empty")


@pytest.mark.parametrize("gz", [False, True], ids=["csv", "gz"])
def test_header_only(tmp_path, write_csv, gz):
    path = write_csv(tmp_path / ("head.csv.gz" if gz else "head.csv"), [], gz=gz)
    assert_names_line(load_error(path), path, None, "no rows")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "fer2013.csv"
    assert_names_line(load_error(path), path, None, "no such file")


@pytest.mark.parametrize("keep", [0.5, 0.9, -8], ids=["half", "most", "no_trailer"])
def test_truncated_gzip(tmp_path, write_csv, keep):
    full = write_csv(tmp_path / "full.csv.gz", random_rows(30, seed=3), gz=True)
    raw = full.read_bytes()
    cut = int(len(raw) * keep) if keep > 0 else len(raw) + keep
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(raw[:cut])
    assert_names_line(load_error(path), path, None, "truncated")


def test_binary_garbage_is_a_data_error(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 4)
    assert str(path) in str(load_error(path))


# --- regressions: bugs found while writing these tests ------------------------------------------------------

def test_pixel_overflowing_int32_is_refused(tmp_path, write_csv):
    lines = [f"0,{GOOD},Training", f"0,{_pix(['4294967296'] + ['7'] * 2303)},Training"]
    path = write_csv(tmp_path / "wrap.csv", lines)
    assert_names_line(load_error(path), path, 3, "4294967296")


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000"], ids=["nbsp", "em", "ideographic"])
def test_non_ascii_space_between_pixels_is_a_data_error(tmp_path, write_csv, space):
    # str.split() splits on it, numpy's parser does not: the row must be refused, not mis-counted
    pixels = _pix(["7"] * 2304).replace(" ", space, 1)
    path = write_csv(tmp_path / "nbsp.csv", [f"0,{GOOD},Training", f"0,{pixels},Training"])
    assert_names_line(load_error(path), path, 3, "non-ASCII", repr(space))


def test_huge_label_is_a_data_error(tmp_path, write_csv):
    lines = [f"0,{GOOD},Training", f"99999999999999999999,{GOOD},Training"]
    path = write_csv(tmp_path / "biglabel.csv", lines)
    assert_names_line(load_error(path), path, 3, "emotion")


def test_line_number_counts_blank_lines(tmp_path, write_csv):
    lines = [f"0,{GOOD},Training", "", f"0,{GOOD},Training", f"9,{GOOD},Training"]
    path = write_csv(tmp_path / "blank.csv", lines)
    # header=1, row=2, blank=3, row=4, bad row=5
    assert_names_line(load_error(path), path, 5, "emotion")


# --- hypothesis: the CSV parser ----------------------------------------------------------------

_counter = itertools.count()
_PIXEL_KINDS = ("random", "zeros", "max", "gradient")


def _pixels(kind: str, seed: int) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(2304, np.uint8)
    if kind == "max":
        return np.full(2304, 255, np.uint8)
    if kind == "gradient":
        return (np.arange(2304) + seed) % 256
    return np.random.default_rng(seed).integers(0, 256, 2304, dtype=np.uint8)


valid_row = st.tuples(st.integers(0, 6), st.sampled_from(_PIXEL_KINDS), st.integers(0, 2**16),
                      st.sampled_from(SPLITS))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(valid_row, min_size=1, max_size=8), gz=st.booleans())
def test_property_valid_rows_round_trip(tmp_path_factory, write_csv, rows, gz):
    rows = [(label, _pixels(kind, seed), usage) for label, kind, seed, usage in rows]
    folder = tmp_path_factory.getbasetemp() / "hyp_valid"
    path = write_csv(folder / f"r{next(_counter)}.csv{'.gz' if gz else ''}", rows, gz=gz)
    assert_matches(load_fer2013(path, use_cache=False), rows)


def _not_a_pixel(token: str) -> bool:
    return not (token.isascii() and token.isdigit() and int(token) <= 255)


bad_token = st.one_of(
    st.integers(256, 2**31 - 1).map(str),                       # too large (beyond 255)
    st.integers(-(2**31), -1).map(str),                         # negative
    st.floats(allow_nan=False).map(repr),                       # 12.5, 1e+20, inf, -0.0
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                                   blacklist_characters=",\"'"),
            min_size=1, max_size=6).filter(_not_a_pixel),      # letters, signs, odd digits
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_rows=st.integers(1, 6), data=st.data(), token=bad_token, gz=st.booleans())
def test_property_corrupted_token_names_its_line(tmp_path_factory, write_csv, n_rows, data, token, gz):
    bad_row = data.draw(st.integers(0, n_rows - 1), label="bad_row")
    position = data.draw(st.integers(0, 2303), label="position")
    lines = []
    for i in range(n_rows):
        tokens = pixels_text(_pixels("gradient", i)).split()
        if i == bad_row:
            tokens[position] = token
        lines.append(f"{i % 7},{' '.join(tokens)},{SPLITS[i % 3]}")
    folder = tmp_path_factory.getbasetemp() / "hyp_bad"
    path = write_csv(folder / f"b{next(_counter)}.csv{'.gz' if gz else ''}", lines, gz=gz)
    err = load_error(path)
    assert_names_line(err, path, bad_row + 2, "pixel")
    shown = str(int(token)) if token.lstrip("-").isdigit() and token.isascii() else repr(token)
    if len(shown) > 40:  # the message cuts a long token's repr (4 astral characters are 42)
        shown = shown[:40] + "..."
    assert shown in str(err), f"{shown} not in {err}"



# --- the parse cache ---------------------------------------------------------------------------

def cache_files(cache_dir: Path, source: Path) -> list[Path]:
    return sorted(cache_dir.glob(f"{source.name}.*.npz"))


def test_cache_is_written_and_read(tmp_path, write_csv, fer_cache_dir):
    rows = random_rows(6, seed=4)
    path = write_csv(tmp_path / "cached.csv", rows)
    assert cache_files(fer_cache_dir, path) == []
    assert_matches(load_fer2013(path), rows)
    (cache,) = cache_files(fer_cache_dir, path)
    assert not list(fer_cache_dir.glob("*.tmp*"))  # the atomic write left no temporary behind
    # Doctor the cache: a second load must come from it (a hit), not from the CSV.
    with np.load(cache) as z:
        images, labels, usage = z["images"], z["labels"], z["usage"]
    np.savez(cache, images=255 - images, labels=(labels + 1) % 7, usage=usage)
    hit = load_fer2013(path)
    np.testing.assert_array_equal(hit.train.images, 255 - expected_splits(rows)["Training"][0])
    # A rewritten source (new content, newer mtime) is parsed again, not served from the cache.
    new_rows = random_rows(6, seed=5)
    write_csv(path, new_rows)
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 5_000_000_000))
    assert_matches(load_fer2013(path), new_rows)
    assert len(cache_files(fer_cache_dir, path)) == 2


def test_cache_notices_same_size_rewrite(tmp_path, write_csv, fer_cache_dir):
    rows = [(1, np.full(2304, 9, np.uint8), "Training"), (2, np.full(2304, 8, np.uint8), "PublicTest")]
    path = write_csv(tmp_path / "same.csv", rows)
    before = path.stat()
    assert_matches(load_fer2013(path), rows)
    rows2 = [(5, np.full(2304, 3, np.uint8), "Training"), (4, np.full(2304, 1, np.uint8), "PublicTest")]
    write_csv(path, rows2)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert_matches(load_fer2013(path), rows2)


def test_corrupt_cache_is_a_miss(tmp_path, write_csv, fer_cache_dir):
    rows = random_rows(3, seed=6)
    path = write_csv(tmp_path / "corrupt.csv", rows)
    load_fer2013(path)
    (cache,) = cache_files(fer_cache_dir, path)
    cache.write_bytes(b"not an npz")
    assert_matches(load_fer2013(path), rows)


def test_use_cache_false_writes_nothing_and_cache_dir_argument(tmp_path, write_csv, fer_cache_dir):
    rows = random_rows(3, seed=7)
    path = write_csv(tmp_path / "nocache.csv", rows)
    load_fer2013(path, use_cache=False)
    assert cache_files(fer_cache_dir, path) == []
    own = tmp_path / "own_cache"
    assert_matches(load_fer2013(path, cache_dir=own), rows)
    assert len(cache_files(own, path)) == 1 and cache_files(fer_cache_dir, path) == []


def test_unwritable_cache_only_costs_speed(tmp_path, write_csv):
    rows = random_rows(3, seed=8)
    path = write_csv(tmp_path / "x.csv", rows)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("I am a file")
    assert_matches(load_fer2013(path, cache_dir=not_a_dir), rows)


def test_errors_are_not_cached(tmp_path, write_csv, fer_cache_dir):
    path = write_csv(tmp_path / "err.csv", [f"9,{GOOD},Training"])
    for _ in range(2):
        with pytest.raises(DataError):
            load_fer2013(path)
    assert cache_files(fer_cache_dir, path) == []


# --- image-folder layout -----------------------------------------------------------------------

def save_png(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8))
    if mode != "L":
        img = img.convert(mode)
    img.save(path)
    return path


def image_tree(root: Path) -> dict:
    rng = np.random.default_rng(9)
    imgs = {name: rng.integers(0, 256, (48, 48), dtype=np.uint8) for name in "abcd"}
    save_png(root / "train" / "happy" / "Training_1.png", imgs["a"])
    save_png(root / "train" / "Neutral" / "Training_7.png", imgs["d"], mode="RGB")
    save_png(root / "test" / "sad" / "PublicTest_2.png", imgs["b"])
    save_png(root / "test" / "angry" / "PrivateTest_3.png", imgs["c"])
    return imgs


def test_image_folder_loads(tmp_path):
    imgs = image_tree(tmp_path / "fer")
    data = load_fer2013(tmp_path / "fer", use_cache=False)
    assert (len(data.train), len(data.public_test), len(data.private_test)) == (2, 1, 1)
    order = np.argsort(data.train.labels)  # Happy=3, Neutral=6
    np.testing.assert_array_equal(data.train.labels[order], [EMOTIONS.index("Happy"),
                                                             EMOTIONS.index("Neutral")])
    np.testing.assert_array_equal(data.train.images[order], np.stack([imgs["a"], imgs["d"]]))
    np.testing.assert_array_equal(data.public_test.images[0], imgs["b"])
    assert data.public_test.labels.tolist() == [EMOTIONS.index("Sad")]
    np.testing.assert_array_equal(data.private_test.images[0], imgs["c"])
    assert data.private_test.labels.tolist() == [EMOTIONS.index("Angry")]
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int64


def test_image_folder_cache_sees_a_new_file(tmp_path, fer_cache_dir):
    root = tmp_path / "fer"
    image_tree(root)
    assert len(load_fer2013(root).train) == 2
    assert len(load_fer2013(root).train) == 2  # from the cache
    save_png(root / "train" / "fear" / "Training_11.png", np.zeros((48, 48)))
    assert len(load_fer2013(root).train) == 3


def test_image_folder_wrong_size(tmp_path):
    root = tmp_path / "fer"
    image_tree(root)
    bad = save_png(root / "train" / "happy" / "Training_5.png", np.zeros((40, 48)))
    err = load_error(root)
    assert_names_line(err, bad, None, "48x40", "48x48")


def test_image_folder_non_image(tmp_path):
    root = tmp_path / "fer"
    image_tree(root)
    bad = root / "test" / "sad" / "PublicTest_8.png"
    bad.write_text("this is not a PNG")
    assert_names_line(load_error(root), bad, None, "image")


def test_image_folder_unknown_emotion_and_bad_name(tmp_path):
    root = tmp_path / "a"
    image_tree(root)
    bad = save_png(root / "train" / "bored" / "Training_9.png", np.zeros((48, 48)))
    assert_names_line(load_error(root), bad, None, "bored")
    root = tmp_path / "b"
    image_tree(root)
    bad = save_png(root / "train" / "happy" / "Validation_9.png", np.zeros((48, 48)))
    assert_names_line(load_error(root), bad, None, "PublicTest_")


def test_image_folder_without_images(tmp_path):
    (tmp_path / "fer" / "train").mkdir(parents=True)
    (tmp_path / "fer" / "train" / "README.txt").write_text("nothing here")
    assert_names_line(load_error(tmp_path / "fer"), tmp_path / "fer", None, "no image")


# --- the real data -----------------------------------------------------------------------------

def test_small_sample_shape_and_counts(small_data):
    sizes = (len(small_data.train), len(small_data.public_test), len(small_data.private_test))
    assert sizes == (2100, 349, 350)
    for split in (small_data.train, small_data.public_test, small_data.private_test):
        counts = split.class_counts()
        assert len(counts) == 7 and sum(counts) == len(split)
        assert all(c > 0 for c in counts)  # stratified: every emotion in every split
        assert split.images.shape == (len(split), 48, 48) and split.images.dtype == np.uint8
        assert split.labels.min() >= 0 and split.labels.max() <= 6
    # Not degenerate: real faces use the whole grey range and differ from each other.
    assert small_data.train.images.min() == 0 and small_data.train.images.max() == 255
    assert small_data.train.images.std() > 30


def test_small_sample_cached_equals_parsed(small_csv, small_data):
    fresh = load_fer2013(small_csv, use_cache=False)
    for a, b in ((fresh.train, small_data.train), (fresh.public_test, small_data.public_test),
                 (fresh.private_test, small_data.private_test)):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_without_private_test(small_data):
    trial = small_data.without_private_test()
    assert trial.private_test is None
    assert trial.train is small_data.train and trial.public_test is small_data.public_test
    assert small_data.private_test is not None and len(small_data.private_test) == 350
    assert trial.source == small_data.source
