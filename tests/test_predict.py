"""Prediction CLI: every image mode and size works; every bad file exits 2 naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fer_models.checkpoint import save_model
from fer_models.config import TrainConfig
from fer_models.data import EMOTIONS, load_fer2013
from fer_models.models import create_model
from fer_models.predict import load_face, main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    cfg = TrainConfig(backbone="resnet10t", input_size=48)
    save_model(d, create_model(cfg.backbone, input_size=cfg.input_size), cfg)
    return d


def _image(path, mode, size, color):
    Image.new(mode, size, color).save(path)
    return path


@pytest.mark.parametrize("mode,size,color,ext", [
    ("L", (48, 48), 128, "png"), ("RGB", (640, 480), (200, 10, 10), "jpg"),
    ("RGBA", (100, 100), (0, 0, 0, 0), "png"), ("CMYK", (60, 90), (0, 0, 0, 255), "jpg"),
    ("I;16", (48, 48), 3000, "png"), ("P", (30, 30), 3, "gif")])
def test_any_mode_and_size_becomes_48x48_gray(tmp_path, mode, size, color, ext):
    face = load_face(_image(tmp_path / f"f.{ext}", mode, size, color))
    assert face.shape == (48, 48) and face.dtype == np.uint8


def test_transparent_is_white_not_black(tmp_path):
    assert load_face(_image(tmp_path / "t.png", "RGBA", (48, 48), (0, 0, 0, 0))).min() == 255


def test_cli_prints_probabilities_that_sum_to_one(model_dir, tmp_path, capsys):
    a = _image(tmp_path / "a.png", "RGB", (200, 200), (90, 90, 90))
    b = _image(tmp_path / "b.jpg", "L", (48, 48), 30)
    assert main([str(model_dir), str(a), str(b), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["file"] for r in lines] == [str(a), str(b)]
    for r in lines:
        assert r["emotion"] in EMOTIONS
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


BAD_IMAGES = {
    "not_an_image": lambda p: p.write_text("hello, I am text"),
    "truncated_png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20),
    "empty_file": lambda p: p.write_bytes(b""),
    "huge": lambda p: Image.new("L", (8000, 8000), 0).save(p, format="PNG"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_exits_2_naming_the_file(model_dir, tmp_path, capsys, case):
    bad = tmp_path / f"{case}.png"
    BAD_IMAGES[case](bad)
    good = _image(tmp_path / "good.png", "L", (48, 48), 100)
    assert main([str(model_dir), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and str(bad) in captured.err
    assert captured.out == "", "nothing is printed for the good image when one is bad"


def test_missing_image_and_bad_model_dir(model_dir, tmp_path, capsys):
    assert main([str(model_dir), str(tmp_path / "nope.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "nope.png")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def _photo_with_face(face: np.ndarray, at=(200, 120), side=160, canvas=(480, 360)):
    """A larger 'photo': one FER2013 face, enlarged, on a plain noisy background."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(90, 110, canvas[::-1], dtype=np.uint8))
    photo.paste(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC), at)
    return photo


def test_face_crop_finds_the_face_in_a_photo(tmp_path):
    from fer_models.predict import find_face, load_face_info
    from tests.conftest import data_file

    faces = load_fer2013(data_file("fer2013-small.csv.gz")).train.images
    # The Haar cascade misses some FER2013 faces; use the first it finds (deterministic).
    for face in faces[:40]:
        photo = _photo_with_face(face)
        box = find_face(np.asarray(photo))
        if box is not None:
            break
    else:
        pytest.fail("the cascade found none of 40 faces")
    x, y, w, h = box
    assert abs(x + w / 2 - 280) < 40 and abs(y + h / 2 - 200) < 40, box  # on the pasted face
    path = tmp_path / "photo.png"  # lossless: the file holds exactly the photo just searched
    photo.convert("RGB").save(path)
    crop, got, searched = load_face_info(path, "auto")
    assert searched
    assert got is not None and crop.shape == (48, 48)
    # The crop frames the pasted face (the square 200..360 x 120..280), not the whole photo.
    from fer_models.predict import _widen

    left, top, right, bottom = _widen(got, photo.size)
    overlap = (min(right, 360) - max(left, 200)) * (min(bottom, 280) - max(top, 120))
    assert overlap / 160**2 > 0.8 and (right - left) * (bottom - top) < 3 * 160**2
    whole = load_face_info(path, "off").face
    assert crop.std() > 2 * whole[:8].std(), "face detail, not the flat background"


def test_face_crop_leaves_small_images_and_faceless_photos_whole(tmp_path, model_dir, capsys):
    from fer_models.predict import load_face_info

    small = _image(tmp_path / "small.png", "L", (48, 48), 80)
    loaded = load_face_info(small, "auto")
    assert loaded.box is None and not loaded.searched, "a 48 px image is already a face crop"
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400), dtype=np.uint8)).save(noise)
    assert main([str(model_dir), str(noise), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["face"] is None and record["face_found"] is False and record["emotion"] in EMOTIONS
    assert main([str(model_dir), str(noise)]) == 0
    assert "no face found: the whole image was used" in capsys.readouterr().out
    assert main([str(model_dir), str(small)]) == 0, "a face crop is not searched: nothing to say"
    assert "no face found" not in capsys.readouterr().out
    assert main([str(model_dir), str(noise), "--face-crop", "on"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "noise.png: no face found" in err
