"""One key per concept: every key of an earlier schema is refused with its new home, a results
folder's copy of an earlier space still loads (upgraded), and config.json files written with the
earlier precision fields still build the same TrainConfig."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fer_models.config import TrainConfig
from search.space import SpaceError, load_space
from search.space_history import RENAMED

REPO = Path(__file__).resolve().parents[1]

# One file per earlier key, holding it with a value it took then.
EARLIER = {
    "metric": {"metric": "val_loss"},
    "search.scheduler": {"search": {"scheduler": "none"}},
    "search.grace_period": {"search": {"grace_period": 2}},
    "search.reduction_factor": {"search": {"reduction_factor": 3}},
    "search.rung_metric": {"search": {"rung_metric": "train_loss"}},
    "search.checkpoint_every_s": {"search": {"checkpoint_every_s": 30}},
    "retrain.train_on_public": {"retrain": {"train_on_public": True}},
    "retrain.pareto_max": {"retrain": {"pareto": True, "pareto_max": 3}},
    "params.amp": {"params": {"amp": False}},
    "params.cpu_bf16": {"params": {"cpu_bf16": True}},
    "retrain.params.amp": {"retrain": {"params": {"amp": False}}},
    "retrain.params.cpu_bf16": {"retrain": {"params": {"cpu_bf16": True}}},
}


def write(tmp_path: Path, doc: dict) -> Path:
    doc = {**doc, "params": {"backbone": "resnet10t", "epochs": 2, **doc.get("params", {})}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_table_covers_every_earlier_key():
    assert set(EARLIER) == set(RENAMED)


@pytest.mark.parametrize("old", sorted(EARLIER))
def test_an_earlier_key_is_refused_with_its_new_home(old, tmp_path):
    path = write(tmp_path, EARLIER[old])
    with pytest.raises(SpaceError) as e:
        load_space(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {old}: no longer a key; it is now "), message
    assert "\n" not in message


@pytest.mark.parametrize("value", [True, False])
def test_an_earlier_boolean_pareto_is_refused_with_its_new_form(value, tmp_path):
    path = write(tmp_path, {"retrain": {"pareto": value}})
    with pytest.raises(SpaceError) as e:
        load_space(path)
    message = str(e.value)
    assert message.startswith(f"{path}: retrain.pareto: {str(value).lower()} is an earlier "
                              "schema's value; it is now retrain.pareto (the number"), message
    assert "\n" not in message


def test_a_results_folders_earlier_space_loads_in_todays_keys(tmp_path):
    earlier = tmp_path / "earlier.yaml"
    earlier.write_text("""
metric: val_loss
search: {sampler: random, scheduler: asha, grace_period: 2, reduction_factor: 4,
         rung_metric: train_loss, checkpoint_every_s: 30}
retrain: {train_on_public: true, seeds: [0, 1]}
params: {backbone: resnet10t, epochs: 8, cpu_bf16: true, lr: {loguniform: [1.0e-4, 1.0e-2]}}
""")
    today = tmp_path / "today.yaml"
    today.write_text("""
objectives: val_loss
search: {sampler: random, asha: {grace_period: 2, reduction_factor: 4, rung_metric: train_loss},
         checkpoint: 30}
retrain: {params: {train_on_public: true}, seeds: [0, 1]}
params: {backbone: resnet10t, epochs: 8, precision: bf16, lr: {loguniform: [1.0e-4, 1.0e-2]}}
""")
    with pytest.raises(SpaceError):
        load_space(earlier)  # given by a person: refused
    old, new = load_space(earlier, upgrade_earlier=True), load_space(today)
    assert (old.metric, old.mode) == (new.metric, new.mode) == ("val_loss", "min")
    assert old.search == new.search and old.retrain == new.retrain
    assert old.search.asha.grace_period == 2 and old.search.checkpoint_every_s == 30.0
    assert old.retrain.train_on_public and old.fixed() == new.fixed()
    assert old.fixed()["precision"] == "bf16"


def test_scheduler_none_and_pareto_upgrade_to_their_off_values(tmp_path):
    path = tmp_path / "earlier.yaml"
    path.write_text("objectives: {val_accuracy: max, latency_ms: min}\n"
                    "search: {scheduler: none, sampler: random}\n"
                    "retrain: {pareto: true}\nparams: {backbone: resnet10t, epochs: 2}\n")
    space = load_space(path, upgrade_earlier=True)
    assert space.search.asha is None and space.retrain.pareto == 5  # pareto_max's default then


@pytest.mark.parametrize("earlier, precision", [
    ({}, "auto"), ({"amp": True}, "auto"), ({"amp": False}, "fp32"), ({"cpu_bf16": True}, "bf16"),
    ({"amp": True, "cpu_bf16": True}, "bf16"), ({"amp": False, "cpu_bf16": False}, "fp32"),
])
def test_an_earlier_config_json_builds_the_same_precision(earlier, precision):
    assert TrainConfig.from_dict({"backbone": "resnet10t", **earlier}).precision == precision


def test_shipped_spaces_and_docs_use_todays_keys():
    for path in sorted((REPO / "spaces").glob("*.yaml")):
        if path.name != "seed.yaml":  # the seed study's runs file, not a space
            load_space(path)
    readme = (REPO / "spaces" / "README.md").read_text()
    block = readme.split("```yaml", 1)[1].split("```", 1)[0]
    doc = yaml.safe_load(block)
    assert "metric" not in doc and "scheduler" not in doc["search"]
    assert set(doc["search"]["asha"]) == {"grace_period", "reduction_factor", "rung_metric"}
