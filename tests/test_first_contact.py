"""Malformed input, by property: every TrainConfig field, every file the tools read, every split a
run needs. Each is refused with one line naming the file and key, exit 2, before Ray starts and
before anything is written."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import ray

from fer_models import TrainConfig
from fer_models.textfiles import InputFileError, load_yaml
from fer_models.validation import RULES, ConfigError, check_field
from search.run import main as search_main
from tests.bad_input import run_search
from tests.conftest import REPO

# A field's bad values, from its own rule: past each bound, a wrong type, an unknown name.
NUMERIC = [name for name, r in RULES.items() if r.low is not None]


def bad_values(name: str) -> list:
    rule = RULES[name]
    if rule.names is not None:
        return ["no_such_name" if rule.type == "str" else 2, True]
    if rule.low is None:
        return {"bool": [3, "yes please"], "str": [7], "str?": [7]}[rule.type]
    step = 1 if rule.type == "int" else 0.5
    below = rule.low if rule.low_open else rule.low - step
    above = rule.high if rule.high_open else rule.high + step
    values = [v for v in (below, above) if v not in rule.also]
    return values + ["text"] + ([2.5] if rule.type == "int" else [])


def good_value(name: str):
    return getattr(TrainConfig(), name)


FIELD_CASES = [(name, bad) for name in RULES for bad in bad_values(name)]


def test_every_field_has_a_rule():
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    assert fields == set(RULES), fields ^ set(RULES)
    for name in RULES:
        check_field(name, good_value(name))  # the defaults pass their own rules


@pytest.mark.parametrize("name,bad", FIELD_CASES, ids=[f"{n}={b!r}" for n, b in FIELD_CASES])
def test_a_bad_value_is_refused_by_fit_and_the_dataclass(name, bad):
    with pytest.raises(ConfigError, match=f"^{name}: "):
        TrainConfig(**{name: bad})


@pytest.fixture
def never_read(tmp_path):
    path = tmp_path / "never-read.csv"
    path.write_text("not,a,fer2013,file\n")
    return path


def _yaml(v) -> str:
    return json.dumps(v)  # JSON is YAML: quoting and null/true as YAML reads them


@pytest.mark.parametrize("name,bad", FIELD_CASES, ids=[f"{n}={b!r}" for n, b in FIELD_CASES])
def test_a_bad_fixed_value_in_a_space_exits_2(name, bad, tmp_path, never_read, capsys):
    code, err = run_search(f"params:\n  {name}: {_yaml(bad)}\n", tmp_path, never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"space.yaml: params.{name}: " in err, err


@pytest.mark.parametrize("name,bad", FIELD_CASES, ids=[f"{n}={b!r}" for n, b in FIELD_CASES])
def test_a_bad_choice_in_a_space_exits_2(name, bad, tmp_path, never_read, capsys):
    good = good_value(name)
    code, err = run_search(f"params:\n  {name}: {{choice: [{_yaml(good)}, {_yaml(bad)}]}}\n",
                           tmp_path, never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"params.{name}" in err, err


RANGE_CASES = [(name, bad) for name in NUMERIC for bad in bad_values(name)
               if not isinstance(bad, (str, bool)) and not (RULES[name].type == "int" and bad != int(bad))]


@pytest.mark.parametrize("name,bad", RANGE_CASES, ids=[f"{n}={b!r}" for n, b in RANGE_CASES])
def test_a_range_reaching_past_a_bound_exits_2(name, bad, tmp_path, never_read, capsys):
    rule = RULES[name]
    inside = rule.high if bad < rule.low or (rule.low_open and bad == rule.low) else rule.low
    if rule.low_open and inside == rule.low or rule.high_open and inside == rule.high:
        inside = (rule.low + rule.high) / 2
    low, high = sorted([bad, inside if rule.type == "float" else int(inside)])
    kind = "int" if rule.type == "int" else "uniform"
    code, err = run_search(f"params:\n  {name}: {{{kind}: [{low}, {high}]}}\n", tmp_path,
                           never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"params.{name}" in err and "must be" in err, err


# On a command line every value is text: a bool flag takes none, a path field takes any.
CLI_CASES = [(name, bad) for name, bad in FIELD_CASES
             if RULES[name].type not in ("bool", "str?") and not isinstance(bad, bool)]


def exit_code(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own refusal of a non-number
        return e.code


@pytest.mark.parametrize("name,bad", CLI_CASES, ids=[f"{n}={b!r}" for n, b in CLI_CASES])
def test_a_bad_flag_of_the_train_cli_exits_2(name, bad, never_read, capsys):
    from fer_models.train import main

    code = exit_code(main, [f"--{name.replace('_', '-')}", str(bad), "--data", str(never_read)])
    err = capsys.readouterr().err
    assert code == 2, err
    not_a_number = isinstance(bad, str) or (RULES[name].type == "int" and bad != int(bad))
    if not_a_number and RULES[name].type in ("int", "float"):
        assert "invalid" in err.splitlines()[-1], err   # argparse: invalid int/float value
    else:
        assert err.startswith(f"error: {name}: ") and err.count("\n") == 1, err


# --- files: duplicate keys, not UTF-8, corrupt JSON ------------------------------------------

@pytest.mark.parametrize("text,key,lines", [
    ("params:\n  lr: 0.1\n  epochs: 1\n  lr: 0.2\n", "lr", "lines 2 and 4"),
    ("search: {num_samples: 2}\nparams: {epochs: 1}\nsearch: {num_samples: 3}\n", "search", "lines 1 and 3"),
    ("search:\n  seed: 1\n  seed: 2\nparams: {epochs: 1}\n", "seed", "lines 2 and 3"),
    ("params:\n  dropout: {uniform: [0, 0.5], uniform: [0, 0.3]}\n", "uniform", "lines 2 and 2"),
])
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(text, key, lines, tmp_path,
                                                                never_read, capsys):
    code, err = run_search(text, tmp_path, never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"key {key!r} appears twice ({lines})" in err, err


def test_the_same_key_in_two_mappings_is_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("search: {seed: 1}\nparams: {seed: 2}\n")
    assert load_yaml(path) == {"search": {"seed": 1}, "params": {"seed": 2}}


def test_a_space_that_is_not_utf8_exits_2(tmp_path, never_read, capsys):
    code, err = run_search("params:\n  lr: 0.01  # caf\xe9\n".encode("latin-1"), tmp_path,
                           never_read, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "space.yaml: not UTF-8 text (line 2, byte 25" in err, err


def test_a_binary_space_exits_2(tmp_path, never_read, capsys):
    code, err = run_search(bytes(range(256)) * 4, tmp_path, never_read, capsys)
    assert code == 2 and "not UTF-8 text" in err and err.count("\n") == 1, err


@pytest.fixture
def model_dir(tmp_path):
    from fer_models import save_model
    from fer_models.models import create_model

    cfg = TrainConfig(backbone="test_resnet")
    return save_model(tmp_path / "model", create_model(cfg.backbone), cfg)


@pytest.mark.parametrize("content", [b"\xff\xfe{not json", b'{"backbone": "test_resnet",', b"[1, 2]",
                                     b'{"lr": -1}', b'{"input_size": Infinity}', b'{"input_size": NaN}',
                                     b'{"epochs": 1e999}', b'{"epochs": 1' + b"0" * 400 + b"}",
                                     b'{"epochs": 1' + b"0" * 5000 + b"}"])
@pytest.mark.parametrize("tool", ["predict", "export"])
def test_a_corrupt_model_config_exits_2_in_one_line(content, tool, model_dir, capsys):
    (model_dir / "config.json").write_bytes(content)
    if tool == "predict":
        from fer_models.predict import main
        face = model_dir / "face.npy"
        np.save(face, np.zeros((48, 48), np.uint8))
        code = main([str(model_dir), str(face)])
    else:
        from fer_models.export import main
        code = main([str(model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "config.json" in err or "config" in err, err


@pytest.mark.parametrize("content", [
    b"\xff\xfe", b'{"overrides": {}', b'{"data": "x.csv"}',
    # the right keys with the wrong shapes: each would otherwise fail deep inside the resume
    b'{"overrides": "x", "data": "x.csv"}', b'{"overrides": {}, "data": 5}',
    b'{"overrides": {"bogus": 1}, "data": "x.csv"}', b'{"overrides": {"seed": -1}, "data": "x.csv"}',
    b'{"overrides": {"num_samples": true}, "data": "x.csv"}',
    b'{"overrides": {"max_epochs": NaN}, "data": "x.csv"}', b'{"overrides": {"top_k": 0}, "data": "x.csv"}',
    b'{"overrides": {}, "data": "x.csv", "weights_cache": ["a"]}', b"[" * 100_000])
def test_a_corrupt_run_json_stops_resume_with_exit_2(content, tmp_path, capsys):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "run.json").write_bytes(content)
    code = search_main(["--resume", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "run.json" in err, err
    assert not ray.is_initialized()


def test_load_yaml_names_the_file_for_a_missing_one(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_yaml(tmp_path / "absent.yaml")


# --- data: every split the run needs, checked up front ---------------------------------------

def _csv(tmp_path, write_csv, usages: dict[str, int]):
    rng = np.random.default_rng(0)
    rows = [(i % 7, rng.integers(0, 256, 2304), usage)
            for usage, n in usages.items() for i in range(n)]
    return write_csv(tmp_path / "data.csv", rows)


SPACE = "search: {num_samples: 1}\nparams: {backbone: test_resnet, epochs: 1}\n"


@pytest.mark.parametrize("missing", ["Training", "PublicTest", "PrivateTest"])
def test_a_search_on_data_lacking_a_split_stops_before_ray(missing, tmp_path, write_csv, capsys):
    usages = {u: 14 for u in ("Training", "PublicTest", "PrivateTest") if u != missing}
    code, err = run_search(SPACE, tmp_path, _csv(tmp_path, write_csv, usages), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"no {missing} rows (needed for" in err and "data.csv" in err, err


@pytest.mark.parametrize("args,missing", [([], "PublicTest"), (["--test"], "PrivateTest")])
def test_the_train_cli_checks_the_splits_it_reads(args, missing, tmp_path, write_csv, capsys):
    from fer_models.train import main

    usages = {"Training": 14, "PublicTest": 7, "PrivateTest": 7}
    usages.pop(missing)
    data = _csv(tmp_path, write_csv, usages)
    code = main(["--backbone", "test_resnet", "--epochs", "1", "--data", str(data), *args])
    err = capsys.readouterr().err
    assert code == 2 and f"no {missing} rows" in err and err.count("\n") == 1, err


def test_a_missing_weights_file_in_a_space_exits_2(tmp_path, never_read, capsys):
    code, err = run_search("params:\n  pretrained_file: {choice: [null, /no/such/weights.pt]}\n",
                           tmp_path, never_read, capsys)
    assert code == 2 and "params.pretrained_file: /no/such/weights.pt: no such weights file" in err, err


def test_a_trial_no_node_can_hold_exits_2_instead_of_waiting_forever(tmp_path, small_csv, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("search: {num_samples: 1}\nresources: {cpus_per_trial: 512}\n"
                     "params: {backbone: test_resnet, epochs: 1}\n")
    out = tmp_path / "results"
    code = search_main([str(space), "--data", str(small_csv), "--output", str(out), "--name", "x",
                        "--cpus", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "a trial needs 512 CPU" in err and "largest node has 2 CPU" in err, err
    assert not (out / "x").exists(), "the unstarted experiment folder is removed"
    assert not ray.is_initialized()


def test_a_name_that_is_an_existing_file_exits_2_and_keeps_it(tmp_path, never_read, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "x").write_text("someone's notes")
    space = tmp_path / "space.yaml"
    space.write_text("params: {epochs: 1}")
    code = search_main([str(space), "--data", str(never_read), "--output", str(out), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err, err
    assert (out / "x").read_text() == "someone's notes"


def test_a_weights_cache_of_an_unknown_user_exits_2(tmp_path, never_read, capsys):
    code, err = run_search("params: {epochs: 1}", tmp_path, never_read, capsys,
                           args=("--weights-cache", "~no-such-user-here/cache"))
    assert code == 2 and err.count("\n") == 1 and "--weights-cache" in err, err


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-port-here"])
def test_an_unreachable_cluster_exits_2_and_leaves_no_folder(address, tmp_path, small_csv, capsys):
    """Port 1 of this machine: no Ray there (ray.init would retry for ~12 minutes). The folder
    of the run that never started goes."""
    out = tmp_path / "results"
    code = search_main([str(REPO / "spaces" / "smoke.yaml"), "--data", str(small_csv),
                        "--output", str(out), "--name", "x", "--address", address])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--address {address}" in err, err
    assert not (out / "x").exists()
    assert not ray.is_initialized()
