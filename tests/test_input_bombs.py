"""Inputs built to hang or flood a tool: YAML alias bombs, deep nesting, oversized files, FIFOs
and devices given as files, values quoted back whole in an error, images whose decoder raises
something unexpected. Each is one short line and exit 2, before Ray starts, in seconds."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
import ray

from fer_models.cli import MAX_ERROR_CHARS, error_line
from fer_models.textfiles import MAX_TEXT_BYTES, InputFileError, load_json, load_yaml
from search.run import main as search_main

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
    for i in range(8)) + "params: {epochs: *i}\n"


def search(args, capsys, timeout_s: float = 60.0) -> tuple[int, str]:
    """search.run's exit code and stderr; fails (instead of hanging) past ``timeout_s``."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(code=search_main(args)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout_s)
    assert not worker.is_alive(), f"search.run still running after {timeout_s} s: it hung"
    assert time.monotonic() - started < timeout_s
    err = capsys.readouterr().err
    assert not ray.is_initialized(), "Ray must not start for bad input"
    return result["code"], err


def one_short_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err[:2000]
    assert len(err) <= MAX_ERROR_CHARS + 20, len(err)
    return err


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, small_csv, capsys):
    space = tmp_path / "bomb.yaml"
    space.write_text(BILLION_LAUGHS)  # 10**9 values once expanded
    with pytest.raises(InputFileError, match="aliases"):
        load_yaml(space)
    code, err = search([str(space), "--data", str(small_csv), "--output", str(tmp_path / "r")],
                       capsys)
    assert code == 2 and "expand to more than" in one_short_line(err)


def test_a_few_aliases_are_still_yaml(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &b {lr: 0.1}\nparams: *b\n")
    assert load_yaml(path) == {"base": {"lr": 0.1}, "params": {"lr": 0.1}}


@pytest.mark.parametrize("suffix, text", [(".yaml", "[" * 50_000 + "]" * 50_000),
                                          (".json", "[" * 50_000 + "]" * 50_000)])
def test_deep_nesting_is_one_line(suffix, text, tmp_path):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(InputFileError, match="nested too deeply"):
        (load_yaml if suffix == ".yaml" else load_json)(path)


def test_an_oversized_space_is_refused_without_reading_it(tmp_path, small_csv, capsys):
    space = tmp_path / "huge.yaml"
    with open(space, "wb") as f:
        f.truncate(MAX_TEXT_BYTES + 1)  # sparse: no disk, no time
    code, err = search([str(space), "--data", str(small_csv), "--output", str(tmp_path / "r")],
                       capsys)
    assert code == 2 and "more than the" in one_short_line(err)


@pytest.mark.parametrize("what", ["space", "data"])
def test_a_fifo_is_refused_instead_of_read_forever(what, tmp_path, small_csv, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nothing ever writes to it: opening it to read would block forever
    space = tmp_path / "space.yaml"
    space.write_text("params: {backbone: resnet10t, epochs: 1}\n")
    args = [str(fifo if what == "space" else space), "--data",
            str(fifo if what == "data" else small_csv), "--output", str(tmp_path / "r")]
    code, err = search(args, capsys, timeout_s=30)
    assert code == 2 and "FIFO" in one_short_line(err)


def test_a_device_as_data_is_refused(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("params: {backbone: resnet10t, epochs: 1}\n")
    code, err = search([str(space), "--data", "/dev/zero", "--output", str(tmp_path / "r")],
                       capsys, timeout_s=30)
    assert code == 2 and "device" in one_short_line(err)


def test_an_error_quoting_a_huge_value_stays_one_short_line(tmp_path, small_csv, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("params: {lr: {uniform: " + json.dumps(list(range(20_000))) + "}}\n")
    code, err = search([str(space), "--data", str(small_csv), "--output", str(tmp_path / "r")],
                       capsys)
    assert code == 2 and "params.lr.uniform" in one_short_line(err)


def test_error_line_folds_and_cuts():
    line = error_line("a\nb\r\n" + "x" * 10_000 + " the hint")
    assert "\n" not in line and line.startswith("error: a b x") and line.endswith("the hint")
    assert len(line) <= MAX_ERROR_CHARS + len("error: ")


def test_an_image_whose_decoder_raises_something_else_is_one_line(tmp_path, capsys):
    """A PNG whose IHDR chunk is cut short (its decoders raise struct.error, SyntaxError or
    IndexError on such files, not only OSError): one line, exit 2, nothing predicted."""
    import struct
    import zlib

    from fer_models import save_model
    from fer_models.config import TrainConfig
    from fer_models.models import create_model
    from fer_models.predict import main

    cfg = TrainConfig(backbone="test_resnet")
    model = save_model(tmp_path / "model", create_model(cfg.backbone), cfg)
    ihdr = b"IHDR" + b"\x00\x00\x00\x30"  # 4 of IHDR's 13 bytes
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 4) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    image = tmp_path / "cut.png"
    image.write_bytes(png)
    good = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(good)
    code = main([str(model), str(good), str(image)])
    err = capsys.readouterr().err
    assert code == 2 and "cut.png" in one_short_line(err)


@pytest.mark.parametrize("record", ['{"members": [5]}', '{"members": "member-0"}',
                                    '{"members": [""]}', '[1, 2]'])
def test_an_ensemble_json_of_the_wrong_shape_is_one_line(record, tmp_path, capsys):
    from fer_models.predict import main

    folder = tmp_path / "ensemble"
    folder.mkdir()
    (folder / "ensemble.json").write_text(record)
    from PIL import Image

    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(face)
    code = main([str(folder), str(face)])
    err = capsys.readouterr().err
    assert code == 2 and "ensemble.json" in one_short_line(err)


def test_a_yaml_alias_that_holds_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("params: &p {lr: 0.1, again: *p}\n")
    with pytest.raises(InputFileError, match="refers to the value that holds it"):
        load_yaml(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another_model"])
def test_a_model_folder_whose_weights_do_not_load_is_one_line(damage, tmp_path, capsys):
    """model.safetensors cut short, not safetensors at all, or another network's tensors:
    predict and export say which file, in one line, exit 2 (safetensors' own error is no
    ValueError, and torch's lists every key)."""
    from PIL import Image

    from fer_models import save_model
    from fer_models.config import TrainConfig
    from fer_models.export import main as export_main
    from fer_models.models import create_model
    from fer_models.predict import main as predict_main

    cfg = TrainConfig(backbone="test_resnet")
    folder = save_model(tmp_path / "model", create_model(cfg.backbone), cfg)
    weights = folder / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    else:
        other = save_model(tmp_path / "other", create_model("resnet10t"),
                           TrainConfig(backbone="resnet10t"))
        weights.write_bytes((other / "model.safetensors").read_bytes())
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(face)
    for main, args in ((predict_main, [str(folder), str(face)]),
                       (export_main, [str(folder), "--output", str(tmp_path / "m.onnx")])):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and "model.safetensors" in one_short_line(err), err
