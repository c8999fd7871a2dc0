"""Each TrainConfig field's bounds against expectations written from what the field means, not read
from fer_models.validation.RULES (the generated cases in test_first_contact.py test that the
rules are applied; these test that the rules are right)."""
from __future__ import annotations

import pytest

from fer_models.validation import RULES, ConfigError, check_field

OK, BAD = True, False
# field -> [(value, accepted)], from the field's meaning: a probability lies in [0, 1], a rate
# that would remove everything (dropout 1, momentum 1, EMA decay 1) is refused, a count of
# epochs or images is positive, a crop fits inside the 48 px face.
EXPECTED = {
    "input_size": [(48, OK), (224, OK), (8, BAD), (0, BAD), (-48, BAD)],
    "in_chans": [(1, OK), (3, OK), (2, BAD), (0, BAD)],
    "dropout": [(0.0, OK), (0.5, OK), (0.95, OK), (1.0, BAD), (-0.1, BAD)],
    "drop_path": [(0.0, OK), (0.2, OK), (1.0, BAD), (-0.1, BAD)],
    "head_hidden": [(0, OK), (512, OK), (-1, BAD)],
    "epochs": [(1, OK), (60, OK), (0, BAD), (-1, BAD)],
    "batch_size": [(2, OK), (128, OK), (1, BAD), (0, BAD)],
    "lr": [(1e-5, OK), (3e-3, OK), (1.0, OK), (0.0, BAD), (-1e-3, BAD)],
    "weight_decay": [(0.0, OK), (0.05, OK), (-0.01, BAD)],
    "layer_decay": [(0.0, OK), (0.75, OK), (1.0, OK), (1.5, BAD), (-0.5, BAD)],
    "head_warmup_epochs": [(0, OK), (2, OK), (-1, BAD)],
    "momentum": [(0.0, OK), (0.9, OK), (1.0, BAD), (-0.1, BAD)],
    "warmup_epochs": [(0.0, OK), (0.5, OK), (5.0, OK), (-1.0, BAD)],
    "min_lr": [(0.0, OK), (1e-6, OK), (-1e-6, BAD)],
    "plateau_factor": [(0.1, OK), (0.5, OK), (0.0, BAD), (1.0, BAD), (1.5, BAD)],
    "plateau_patience": [(0, OK), (3, OK), (-1, BAD)],
    "early_stop_patience": [(0, OK), (5, OK), (-1, BAD)],
    "label_smoothing": [(0.0, OK), (0.1, OK), (1.0, BAD), (-0.1, BAD)],
    "grad_clip": [(0.0, OK), (1.0, OK), (-1.0, BAD)],
    "ema_decay": [(0.0, OK), (0.999, OK), (1.0, BAD), (-0.5, BAD)],
    "mixup_alpha": [(0.0, OK), (0.2, OK), (-0.1, BAD)],
    "cutmix_alpha": [(0.0, OK), (1.0, OK), (-0.1, BAD)],
    "mixup_prob": [(0.0, OK), (1.0, OK), (1.1, BAD), (-0.1, BAD)],
    "hflip": [(0.0, OK), (0.5, OK), (1.0, OK), (1.5, BAD), (-0.5, BAD)],
    "translate": [(0.0, OK), (0.1, OK), (0.5, OK), (0.75, BAD), (-0.1, BAD)],
    "rotate": [(0.0, OK), (10.0, OK), (180.0, OK), (190.0, BAD), (-5.0, BAD)],
    "scale": [(0.0, OK), (0.1, OK), (1.0, BAD), (-0.1, BAD)],
    "erase_prob": [(0.0, OK), (0.5, OK), (1.0, OK), (1.5, BAD), (-0.1, BAD)],
    "erase_max_area": [(0.25, OK), (1.0, OK), (0.0, BAD), (1.5, BAD)],
    "crop": [(0, OK), (40, OK), (44, OK), (48, OK), (49, BAD), (4, BAD), (-40, BAD)],
    "seed": [(0, OK), (2**31, OK), (-1, BAD), (2**40, BAD)],
    "threads": [(0, OK), (1, OK), (-1, BAD)],
    "eval_batch_size": [(1, OK), (128, OK), (0, BAD)],
    "precision": [("auto", OK), ("bf16", OK), ("fp32", OK), ("fp16", BAD), (True, BAD),
                  ("BF16", BAD)],
    "keep_best": [(True, OK), (False, OK), (1, BAD), ("yes", BAD)],
    "train_on_public": [(False, OK), (0, BAD)],
    "pretrained": [(False, OK), ("true", BAD)],
}


def test_every_numeric_field_has_written_expectations():
    numeric = {name for name, rule in RULES.items() if rule.low is not None or rule.names}
    missing = sorted(numeric - set(EXPECTED) - {"optimizer", "scheduler"})  # names from timm
    assert missing == [], f"write the expected bounds of {missing} here"


@pytest.mark.parametrize("name, value, accepted",
                         [(n, v, ok) for n, probes in EXPECTED.items() for v, ok in probes])
def test_a_field_accepts_what_it_means_and_nothing_else(name, value, accepted):
    if accepted:
        check_field(name, value)
    else:
        with pytest.raises(ConfigError, match=rf"^{name}: "):
            check_field(name, value)


@pytest.mark.parametrize("name, written, meant", [("precision", "BF16", "bf16"),
                                                  ("scheduler", "Cosine", "cosine"),
                                                  ("optimizer", "AdamW", "adamw")])
def test_a_name_in_another_case_is_refused_with_the_exact_one(name, written, meant):
    """Names are looked up as written (a schedule table, ``precision == "bf16"``): one accepted
    in another case would be validated and then silently not found."""
    with pytest.raises(ConfigError, match=rf"did you mean {meant}\?"):
        check_field(name, written)
