"""Data audit: planted duplicates and blanks are counted exactly; the CLI on the real sample;
dropping cross-split duplicates leaves no held-out face in Training and PrivateTest untouched."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_models.audit import audit, drop_cross_split_duplicates, duplicate_rows, main
from fer_models.data import EMOTIONS, FER2013, Split, load_fer2013
from tests.conftest import data_file


def _planted() -> FER2013:
    """Distinct random faces, then: Training rows 0 and 1 identical (different labels), Training
    row 2 == PublicTest row 0, Training row 3 == PrivateTest rows 0 and 1, PublicTest row 1 ==
    PrivateTest row 2, and two blank Training faces (identical to each other too)."""
    rng = np.random.default_rng(0)

    def faces(n):
        return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)

    train, public, private = faces(20), faces(6), faces(6)
    train[1] = train[0]
    public[0] = train[2]
    private[0] = private[1] = train[3]
    private[2] = public[1]
    train[10] = train[11] = 7
    labels = np.arange(20) % 7
    return FER2013(Split(train, labels), Split(public, np.arange(6) % 7),
                   Split(private, np.arange(6) % 7))


def test_planted_counts():
    r = audit(_planted())
    assert r["class_counts"]["Training"]["total"] == 20
    assert r["within_split"]["Training"] == {"images_with_a_copy": 4, "distinct_duplicated_images": 2,
                                             "extra_copies": 2, "label_conflicts": 2}
    assert r["within_split"]["PrivateTest"]["images_with_a_copy"] == 2
    assert r["across_splits"]["Training & PublicTest"]["distinct_images"] == 1
    assert r["across_splits"]["Training & PrivateTest"] == {
        "distinct_images": 1, "rows_in_Training": 1, "rows_in_PrivateTest": 2}
    assert r["across_splits"]["PublicTest & PrivateTest"]["distinct_images"] == 1
    assert r["near_blank"]["Training"]["count"] == 2 and r["near_blank"]["PublicTest"]["count"] == 0
    # groups: train0/1, blanks, train2/public0, train3/private0/1, public1/private2
    assert r["whole_file"] == {"duplicate_groups": 5, "rows_in_duplicate_groups": 11,
                               "groups_across_splits": 3}
    table = duplicate_rows(_planted())
    assert len(table) == 11 and table.groupby("group").size().min() == 2


def test_drop_cross_split_duplicates():
    data = _planted()
    new, dropped = drop_cross_split_duplicates(data)
    assert dropped == {"Training": 2, "PublicTest": 1}
    assert len(new.train) == 18 and len(new.public_test) == 5
    assert new.private_test is data.private_test, "PrivateTest is never changed"
    after = audit(new)["across_splits"]
    assert after["Training & PublicTest"]["distinct_images"] == 0
    assert after["Training & PrivateTest"]["distinct_images"] == 0
    assert after["PublicTest & PrivateTest"]["distinct_images"] == 0
    assert np.array_equal(new.train.labels, np.delete(data.train.labels, [2, 3]))


@pytest.mark.parametrize("count", ["-3", "0"])
def test_a_contact_sheet_of_no_faces_is_refused_before_loading(count, tmp_path, capsys):
    out = tmp_path / "audit"
    with pytest.raises(SystemExit) as info:
        main(["--data", str(tmp_path / "never-read.csv"), "--output", str(out), "--per-class", count])
    assert info.value.code == 2 and "--per-class" in capsys.readouterr().err
    assert not out.exists()


def test_cli_on_the_real_sample(tmp_path, capsys):
    path = data_file("fer2013-small.csv.gz")
    out = tmp_path / "audit"
    assert main(["--data", str(path), "--output", str(out), "--per-class", "5"]) == 0
    printed = capsys.readouterr().out
    assert "Class counts per split" in printed and "contact_sheet.png" in printed
    report = json.loads((out / "audit.json").read_text())
    raw = pd.read_csv(path)
    for split, rows in raw.groupby("Usage"):
        counts = rows.emotion.value_counts()
        assert report["class_counts"][split]["total"] == len(rows)
        for i, e in enumerate(EMOTIONS):
            assert report["class_counts"][split][e] == counts.get(i, 0)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 5 * 48 and sheet.height >= 7 * 48
        assert np.asarray(sheet).std() > 10, "faces, not a blank page"
    dups = pd.read_csv(out / "duplicates.csv")
    assert set(dups.columns) >= {"split", "row_in_split", "label", "group", "copies"}
    data = load_fer2013(path)
    assert report["whole_file"]["rows_in_duplicate_groups"] == len(dups) <= len(raw)
    assert len(data.train) == report["class_counts"]["Training"]["total"]


def test_cli_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    assert main(["--data", str(bad), "--output", str(tmp_path / "a")]) == 2
    assert "bad.csv" in capsys.readouterr().err
    assert not (tmp_path / "a").exists(), "nothing written for bad input"


def test_empty_splits_are_counted_not_crashed_on(tmp_path):
    faces = np.random.default_rng(2).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    empty = Split(np.zeros((0, 48, 48), np.uint8), np.zeros(0, np.int64))
    data = FER2013(Split(faces, np.arange(5) % 7), empty, empty)
    r = audit(data)
    assert r["class_counts"]["PublicTest"]["total"] == 0
    assert r["across_splits"]["Training & PublicTest"]["distinct_images"] == 0
    new, dropped = drop_cross_split_duplicates(data)
    assert dropped == {"Training": 0, "PublicTest": 0} and len(new.train) == 5
    assert len(duplicate_rows(data)) == 0


def test_private_test_copies_counts_each_planted_copy(small_data):
    """The leak figure in summary.json: a PrivateTest face copied into Training and into
    PublicTest is counted once in each; dropping cross-split duplicates makes both 0."""
    from fer_models.audit import private_test_copies

    before = private_test_copies(small_data)
    face, label = small_data.private_test.images[:1], small_data.private_test.labels[:1]
    planted = FER2013(
        Split(np.concatenate([small_data.train.images, face]),
              np.concatenate([small_data.train.labels, (label + 1) % 7])),
        Split(np.concatenate([small_data.public_test.images, 255 - face, face]),
              np.concatenate([small_data.public_test.labels, label, label])),
        small_data.private_test, small_data.source)
    expected = {"Training": before["Training"] + 1, "PublicTest": before["PublicTest"] + 1}
    assert private_test_copies(planted) == expected
    assert private_test_copies(drop_cross_split_duplicates(planted)[0]) == {"Training": 0,
                                                                            "PublicTest": 0}
