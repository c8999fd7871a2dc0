"""fer_models.train / evaluate / checkpoint: fitting tiny models on a slice of the real sample."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_models import (EMOTIONS, FER2013, NonFiniteLossError, Split, TrainConfig, evaluate, fit,
                        load_model, metrics_from_probs, predict_proba, save_model, train_one_epoch)
from fer_models.checkpoint import load_state, save_state
from fer_models.train import build_model, build_optimizer, cpu_has_bf16, seed_everything, uses_bf16
from tests.faults import diverging

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("torch_threads")
TEST_THREADS = int(os.environ.get("FER_TEST_THREADS", "1"))  # as in conftest.py
TIMING_KEYS = {"seconds", "images_per_s"}
NO_AUG = dict(hflip=0.0, translate=0.0, rotate=0.0, scale=0.0)


def subset(split: Split, n: int, seed: int) -> Split:
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return Split(split.images[idx], split.labels[idx])


@pytest.fixture(scope="module")
def tiny(small_data) -> FER2013:
    """256 Training / 64 PublicTest images of the real sample (rows there are sorted by class, so
    the slice is random), no PrivateTest: what a trial sees, only smaller."""
    return FER2013(subset(small_data.train, 256, 0), subset(small_data.public_test, 64, 1), None,
                   small_data.source)


def cfg_(**kw) -> TrainConfig:
    base = dict(backbone="test_resnet", input_size=48, batch_size=64, threads=TEST_THREADS, epochs=2,
                lr=3e-3, eval_batch_size=256, seed=0)
    return TrainConfig(**{**base, **kw})


def metrics_only(history):
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """An uninterrupted 2-epoch run, with its state saved (as a trial would) after epoch 1."""
    folder = tmp_path_factory.mktemp("state_epoch1")
    seen = []

    def on_epoch(metrics, get_state):
        seen.append(dict(metrics))
        if metrics["epoch"] == 1:
            save_state(folder, get_state())

    result = fit(cfg_(), tiny, on_epoch=on_epoch)
    return result, folder, seen


# --- fit ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["test_resnet", "mobilenetv3_small_050"])
def test_train_loss_falls(tiny, backbone):
    result = fit(cfg_(backbone=backbone, epochs=3, **NO_AUG), tiny)
    losses = [h["train_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert all(math.isfinite(x) for x in losses)
    assert losses[0] > losses[1] > losses[2], losses  # (3 other seeds checked: all fall too)
    for h in result.history:
        assert 0.0 <= h["val_accuracy"] <= 1.0 and 0.0 <= h["val_macro_f1"] <= 1.0
        assert h["val_loss"] > 0 and h["images_per_s"] > 0 and h["lr"] > 0


def test_history_and_callback(reference):
    result, _, seen = reference
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert seen == result.history
    expected = {"epoch", "train_loss", "lr", "images_per_s", "val_loss", "val_accuracy",
                "val_macro_f1", "seconds"}
    assert all(expected <= set(h) for h in result.history)
    assert result.best_epoch in (1, 2) and not result.stopped_early
    best = max(h["val_accuracy"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_accuracy"] == best


def test_cosine_schedule_decays_to_min_lr(reference):
    result, _, _ = reference
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] < 3e-3 and lrs[1] < lrs[0]
    assert lrs[1] == pytest.approx(TrainConfig().min_lr, rel=0.5)  # the end of a cosine


def test_same_seed_same_history_other_seed_differs(tiny, reference):
    result, _, _ = reference
    again = fit(cfg_(), tiny)
    assert metrics_only(again.history) == metrics_only(result.history)
    assert states_equal(again.model, result.model)
    other = fit(cfg_(seed=1, epochs=1), tiny)
    assert other.history[0]["train_loss"] != result.history[0]["train_loss"]


def test_bf16_autocast_where_asked_and_supported():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_bf16(cfg_(precision="bf16"), cpu) == cpu_has_bf16()  # fp32 on CPUs without bf16
    assert not uses_bf16(cfg_(), cpu) and not uses_bf16(cfg_(precision="bf16"), torch.device("meta"))
    assert uses_bf16(cfg_(), cuda) and not uses_bf16(cfg_(precision="fp32"), cuda)


def test_cpu_bf16_reruns_exactly_and_differs_from_fp32(tiny, reference):
    cfg = cfg_(precision="bf16")
    first, again = fit(cfg, tiny), fit(cfg, tiny)
    assert metrics_only(first.history) == metrics_only(again.history)  # seeded: bit for bit
    assert states_equal(first.model, again.model)
    fp32 = reference[0]
    if cpu_has_bf16():
        assert first.history[0]["train_loss"] != fp32.history[0]["train_loss"]  # autocast did run
    else:  # the fallback: a CPU without bf16 instructions trains exactly as fp32
        assert metrics_only(first.history) == metrics_only(fp32.history)
    assert all(p.dtype == torch.float32 for p in first.model.parameters())  # weights stay fp32


def test_resume_matches_uninterrupted_run(tiny, reference):
    result, folder, _ = reference
    state = load_state(folder)  # a torch.load(weights_only=True) round trip, as after a restart
    assert state["epoch"] == 1 and len(state["history"]) == 1
    resumed = fit(cfg_(), tiny, resume_state=state)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert metrics_only(resumed.history) == metrics_only(result.history)
    assert states_equal(resumed.model, result.model)


def test_resume_with_dropout_matches_uninterrupted_run(tiny, tmp_path):
    cfg = cfg_(dropout=0.3)

    def on_epoch(metrics, get_state):
        if metrics["epoch"] == 1:
            save_state(tmp_path, get_state())

    full = fit(cfg, tiny, on_epoch=on_epoch)
    resumed = fit(cfg, tiny, resume_state=load_state(tmp_path))
    assert metrics_only(resumed.history) == metrics_only(full.history)


def _flat_model_cfg(**kw) -> TrainConfig:
    """test_convnext has no BatchNorm: with lr ~ 0 its validation loss stays put epoch to epoch
    (changes << the 1e-4 that counts as progress). 2e-8 -> 2e-9 is still a cut torch's
    ReduceLROnPlateau makes (it ignores cuts smaller than eps=1e-8)."""
    return cfg_(backbone="test_convnext", lr=2e-8, min_lr=0.0, scheduler="plateau", **kw)


def test_plateau_scheduler_and_early_stopping(tiny):
    result = fit(_flat_model_cfg(epochs=8, plateau_patience=0, plateau_factor=0.1,
                                 early_stop_patience=2), tiny)
    # epoch 1 sets the best loss; 2 stalls (plateau cuts the lr); 3 stalls again -> stop.
    assert result.stopped_early
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == pytest.approx(2e-8) and lrs[1] == pytest.approx(2e-8)
    assert lrs[2] == pytest.approx(2e-9)
    assert result.best_epoch == 1


def test_resume_with_plateau_scheduler_matches_uninterrupted_run(tiny, tmp_path):
    cfg = _flat_model_cfg(epochs=4, plateau_patience=1)

    def on_epoch(metrics, get_state):
        if metrics["epoch"] == 2:
            save_state(tmp_path, get_state())

    full = fit(cfg, tiny, on_epoch=on_epoch)
    assert full.history[3]["lr"] == pytest.approx(2e-9)  # 2 stalled epochs > patience 1
    resumed = fit(cfg, tiny, resume_state=load_state(tmp_path))
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]


def test_resume_with_early_stopping_restores_best_weights(tiny, tmp_path):
    cfg = _flat_model_cfg(epochs=3, early_stop_patience=5, plateau_patience=10)

    def on_epoch(metrics, get_state):
        if metrics["epoch"] == 1:
            save_state(tmp_path, get_state())

    full = fit(cfg, tiny, on_epoch=on_epoch)
    resumed = fit(cfg, tiny, resume_state=load_state(tmp_path))
    assert resumed.best_epoch == full.best_epoch
    assert states_equal(resumed.model, full.model)


def test_early_stopping_restores_best_accuracy_weights(tiny):
    cfg = cfg_(epochs=3, lr=1e-2, scheduler="plateau", plateau_patience=0, early_stop_patience=1)
    result = fit(cfg, tiny)
    accs = [h["val_accuracy"] for h in result.history]
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmax(accs)) + 1
    # The returned model is the best-accuracy epoch's, not the last one's.
    val = evaluate(result.model, tiny.public_test.images, tiny.public_test.labels, 48)
    assert val["accuracy"] == max(accs)
    # It stopped exactly when the validation loss failed to improve (patience 1), or ran to the end.
    stalled = [i for i in range(1, len(losses)) if losses[i] >= min(losses[:i]) - 1e-4]
    if result.stopped_early:
        assert stalled and stalled[0] == len(losses) - 1
    else:
        assert not stalled and len(losses) == 3


def test_keep_best_returns_the_best_public_test_epoch_without_stopping(tiny):
    cfg = cfg_(epochs=3, lr=3e-2, ema_decay=0.9, keep_best=True)
    result = fit(cfg, tiny)
    accs = [h["val_accuracy"] for h in result.history]
    assert len(accs) == 3 and not result.stopped_early  # keep_best never stops a run
    assert result.best_epoch == result.weights_epoch == int(np.argmax(accs)) + 1
    val = evaluate(result.model, tiny.public_test.images, tiny.public_test.labels, 48)
    assert val["accuracy"] == max(accs)
    # Without it, the last epoch's weights come back (the same run up to there: same seed).
    last = fit(cfg_(epochs=3, lr=3e-2, ema_decay=0.9), tiny)
    assert metrics_only(last.history) == metrics_only(result.history)
    val = evaluate(last.model, tiny.public_test.images, tiny.public_test.labels, 48)
    assert val["accuracy"] == accs[-1] and last.weights_epoch == 3


def test_non_finite_loss_raises(tiny):
    cfg = cfg_(epochs=1)
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        fit(cfg, tiny, model=diverging(cfg))


def test_non_finite_loss_in_a_later_epoch(tiny):
    cfg = cfg_(epochs=3)
    model, seen = diverging(cfg, diverged=False), []

    def diverge_after_epoch_1(metrics, _):
        seen.append(metrics)
        model.diverged = True

    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        fit(cfg, tiny, on_epoch=diverge_after_epoch_1, model=model)
    assert [m["epoch"] for m in seen] == [1]


def test_a_given_model_is_the_one_trained(tiny):
    cfg = cfg_(epochs=1)
    model = build_model(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(cfg, tiny, model=model)
    assert result.model is model
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_on_public_has_no_validation(tiny):
    result = fit(cfg_(epochs=1, train_on_public=True, scheduler="none"), tiny)
    assert "val_accuracy" not in result.history[0]
    with pytest.raises(ValueError, match="plateau"):
        fit(cfg_(epochs=1, train_on_public=True, scheduler="plateau"), tiny)


def test_unknown_scheduler(tiny):
    with pytest.raises(ValueError, match="scheduler"):
        fit(cfg_(epochs=1, scheduler="step"), tiny)


def test_train_one_epoch_counts_steps_and_drops_ragged_batch(tiny):
    cfg = cfg_(batch_size=48)
    device = torch.device("cpu")
    gen = seed_everything(0)
    model = build_model(cfg, device)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch=5)
    images = torch.from_numpy(tiny.train.images[:250])
    labels = torch.from_numpy(tiny.train.labels[:250])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(model, optimizer, images, labels, cfg, gen, scheduler, num_updates=10)
    assert stats["num_updates"] == 10 + 250 // 48
    assert math.isfinite(stats["train_loss"]) and stats["images_per_s"] > 0
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fit_never_needs_private_test(small_data):
    data = FER2013(subset(small_data.train, 64, 2), subset(small_data.public_test, 32, 3),
                   small_data.private_test).without_private_test()
    assert fit(cfg_(epochs=1), data).history[0]["epoch"] == 1


# --- save / load -------------------------------------------------------------------------------

def test_save_load_round_trip(tiny, reference, tmp_path):
    result, _, _ = reference
    cfg = cfg_()
    folder = save_model(tmp_path / "model", result.model, cfg)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    model, cfg2 = load_model(folder)
    assert cfg2 == cfg
    images = tiny.public_test.images
    np.testing.assert_array_equal(predict_proba(model, images, 48), predict_proba(result.model, images, 48))


def test_save_load_hidden_head_three_channels(tmp_path, tiny):
    cfg = cfg_(head_hidden=32, in_chans=3, input_size=64, dropout=0.5)
    torch.manual_seed(0)
    model = build_model(cfg, torch.device("cpu"))
    save_model(tmp_path, model, cfg)
    loaded, cfg2 = load_model(tmp_path)
    assert cfg2.head_hidden == 32 and cfg2.in_chans == 3
    images = tiny.public_test.images[:16]
    np.testing.assert_array_equal(predict_proba(loaded, images, 64, 3),
                                  predict_proba(model, images, 64, 3))


# --- evaluate ----------------------------------------------------------------------------------

def test_metrics_from_probs_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 6])
    preds = np.array([0, 1, 1, 1, 2, 3, 4, 6, 6, 0])
    probs = np.full((10, 7), 0.1 / 6)
    probs[np.arange(10), preds] = 0.9
    m = metrics_from_probs(probs, labels)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.7)
    expected_recall = [0.5, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5]
    assert m["per_class_accuracy"] == pytest.approx(dict(zip(EMOTIONS, expected_recall)))
    # F1 per class: 0.5, 0.8, 1, 1, 1, 0, 0.5
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 1 + 1 + 1 + 0 + 0.5) / 7)
    cm = np.zeros((7, 7), int)
    for t, p in zip(labels, preds):
        cm[t, p] += 1
    assert m["confusion_matrix"] == cm.tolist()
    assert np.array(m["confusion_matrix"]).sum() == 10
    assert m["loss"] == pytest.approx((7 * -math.log(0.9) + 3 * -math.log(0.1 / 6)) / 10, rel=1e-6)
    json.dumps(m)  # plain Python types: goes straight into metrics.json / Ray results


def test_metrics_perfect_and_empty():
    labels = np.arange(7).repeat(3)
    perfect = metrics_from_probs(np.eye(7)[labels], labels)
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0
    assert perfect["loss"] == pytest.approx(0.0, abs=1e-9)
    empty = metrics_from_probs(np.zeros((0, 7)), np.zeros(0, dtype=np.int64))
    assert empty["n"] == 0 and empty["accuracy"] == 0.0


@pytest.mark.parametrize("in_chans,size", [(1, 48), (3, 64)])
def test_predict_proba_tta_sums_to_one(tiny, in_chans, size):
    torch.manual_seed(0)
    model = build_model(cfg_(in_chans=in_chans, input_size=size), torch.device("cpu"))
    images = tiny.public_test.images[:20]
    plain = predict_proba(model, images, size, in_chans, batch_size=8)
    tta = predict_proba(model, images, size, in_chans, batch_size=8, tta=True)
    for probs in (plain, tta):
        assert probs.shape == (20, 7) and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta)
    # batching does not change the answer
    np.testing.assert_allclose(plain, predict_proba(model, images, size, in_chans, batch_size=64),
                               atol=1e-6)
    m = evaluate(model, images, tiny.public_test.labels[:20], size, in_chans, tta=True)
    assert m["n"] == 20 and 0.0 <= m["accuracy"] <= 1.0


# --- CLI ----------------------------------------------------------------------------------------

def run_cli(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "-m", "fer_models.train", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _runpy_warning(line: str) -> bool:
    return "RuntimeWarning" in line and "found in sys.modules" in line


def cli_in_process(capsys, *args) -> tuple[int, str, str]:
    """fer_models.train's exit code, stdout and stderr, in this process: for what is not about
    the process boundary (the bad-backbone test below runs the real process)."""
    from fer_models.train import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_help(capsys):
    code, out, err = cli_in_process(capsys, "--help")
    assert code == 0, err
    for flag in ("--data", "--backbone", "--input-size", "--head-hidden", "--test", "--tta"):
        assert flag in out


@pytest.fixture(scope="module")
def bad_backbone_run(small_csv):
    return run_cli("--data", small_csv, "--backbone", "resnet1800", "--epochs", "1")


def test_cli_bad_backbone_exits_2_with_one_line(bad_backbone_run):
    proc = bad_backbone_run
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not _runpy_warning(line)]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "resnet1800" in lines[0] and "did you mean" in lines[0]


def test_cli_stderr_is_exactly_the_error_line(bad_backbone_run):
    assert len(bad_backbone_run.stderr.strip().splitlines()) == 1, bad_backbone_run.stderr


def test_cli_bad_data_exits_2(tmp_path, capsys):
    code, _, err = cli_in_process(capsys, "--data", tmp_path / "missing.csv", "--backbone",
                                  "test_resnet")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "missing.csv" in lines[0]


def test_cli_trains_and_writes_outputs(small_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli_in_process(
        capsys, "--data", small_csv, "--backbone", "test_resnet", "--epochs", "1",
        "--batch-size", "128", "--threads", TEST_THREADS, "--output", out, "--test", "--tta")
    assert code == 0, err[-2000:]
    assert "train 2100" in stdout and "PrivateTest accuracy (TTA)" in stdout
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["backbone"] == "test_resnet" and len(report["history"]) == 1
    assert report["private_test"]["n"] == 350 and report["private_test_tta"]["n"] == 350
    model, cfg = load_model(out)
    assert cfg.backbone == "test_resnet" and cfg.epochs == 1


def test_channels_last_on_cpu_trains_and_matches_nchw(tiny):
    """channels_last applies on the CPU too: the same run as NCHW, up to float reordering."""
    results = {}
    for layout in (True, False):
        cfg = cfg_(backbone="resnet10t", epochs=1, channels_last=layout)
        model = build_model(cfg, torch.device("cpu"))
        conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)  # unambiguous layout
                and m.in_channels > 1 and m.kernel_size[0] > 1][-1]
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == layout
        results[layout] = fit(cfg, tiny).history[-1]
    a, b = results[True], results[False]
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-3
    assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 2 / 64


def test_fit_never_reads_private_test(tiny):
    """The retrain hands fit the whole dataset: a PrivateTest of garbage (labels out of range,
    which would raise if scored) and no PrivateTest at all must give the same history."""
    poisoned = Split(np.full((32, 48, 48), 255, np.uint8), np.full(32, 99, np.int64))
    with_poison = FER2013(tiny.train, tiny.public_test, poisoned, tiny.source)
    a = fit(cfg_(epochs=2), with_poison).history
    b = fit(cfg_(epochs=2), FER2013(tiny.train, tiny.public_test, None, tiny.source)).history
    assert metrics_only(a) == metrics_only(b)


def test_selection_inside_fit_is_blind_to_private_test(tiny, small_data):
    """keep_best, EMA and early stopping each choose (an epoch, the EMA or raw weights, when to
    stop): with a real PrivateTest and a poisoned one (labels shifted, pixels inverted: scorable
    but wrong) the choices and the weights are identical."""
    real = subset(small_data.private_test, 64, 2)
    poisoned = Split(np.ascontiguousarray(255 - real.images), (real.labels + 1) % 7)
    cfg = cfg_(epochs=4, keep_best=True, ema_decay=0.9, early_stop_patience=1, lr=0.02)
    a = fit(cfg, FER2013(tiny.train, tiny.public_test, real, tiny.source))
    b = fit(cfg, FER2013(tiny.train, tiny.public_test, poisoned, tiny.source))
    assert "ema_selected" in a.history[0]  # the EMA choice was made
    assert metrics_only(a.history) == metrics_only(b.history)
    assert a.weights_epoch == b.weights_epoch
    assert states_equal(a.model, b.model)
