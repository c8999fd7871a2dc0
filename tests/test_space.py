"""Search-space YAML validation: every bad file exits 2 with a message naming the file and the key,
before Ray starts and without writing anything."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import ray

from fer_models.config import TrainConfig
from search.run import main
from search.space import SpaceError, load_space

REPO = Path(__file__).resolve().parents[1]
GOOD = """
search: {sampler: tpe, seed: 0, num_samples: 2}
params:
  backbone: resnet10t
  epochs: 1
  lr: {loguniform: [1.0e-4, 1.0e-2]}
"""

# (case id, YAML text, key the message must name, words the message must contain)
BAD_SPACES = [
    ("typo_section", "serach: {num_samples: 2}\nparams: {epochs: 1}", "serach", "did you mean 'search'"),
    ("typo_param", "params: {dropuot: 0.1}", "params.dropuot", "did you mean 'dropout'"),
    ("typo_search_key", "search: {num_sample: 2}\nparams: {epochs: 1}", "search.num_sample", "num_samples"),
    ("wrong_type_param", "params: {lr: fast}", "params.lr", "must be a number"),
    ("wrong_type_setting", "search: {num_samples: ten}\nparams: {epochs: 1}", "search.num_samples", "must be int"),
    ("wrong_type_bool", "search: {exact_resume: 3}\nparams: {epochs: 1}", "search.exact_resume", "must be bool"),
    ("checkpoint_text", "search: {checkpoint: often}\nparams: {epochs: 1}", "search.checkpoint", "seconds > 0"),
    ("inverted_range", "params: {dropout: {uniform: [0.5, 0.1]}}", "params.dropout.uniform", "inverted"),
    ("empty_range", "params: {lr: {loguniform: [0.01, 0.01]}}", "params.lr.loguniform", "inverted"),
    ("empty_choice", "params: {backbone: {choice: []}}", "params.backbone.choice", "non-empty"),
    ("loguniform_zero", "params: {lr: {loguniform: [0, 0.1]}}", "params.lr.loguniform", "> 0"),
    ("step_too_big", "params: {dropout: {uniform: [0.0, 0.2], step: 0.5}}", "params.dropout.step", "step"),
    ("float_int_range", "params: {epochs: {int: [1.5, 3]}}", "params.epochs.int", "integers"),
    ("int_as_uniform", "params: {epochs: {uniform: [1, 3]}}", "params.epochs", "int: [low, high]"),
    ("two_distributions", "params: {lr: {uniform: [0.1, 0.2], loguniform: [0.1, 0.2]}}", "params.lr", "exactly one"),
    ("not_a_list", "params: {lr: {uniform: 0.1}}", "params.lr.uniform", "[low, high]"),
    ("dropout_above_one", "params: {dropout: {uniform: [0.5, 1.5]}}", "params.dropout.uniform", "[0, 1)"),
    ("unknown_backbone", "params: {backbone: resnet81}", "params.backbone", "unknown timm backbone 'resnet81'"),
    ("unknown_backbone_in_choice", "params: {backbone: {choice: [resnet18, not_a_net]}}", "params.backbone.choice", "not_a_net"),
    ("input_below_minimum", "params: {backbone: inception_v3, input_size: 48}", "params.input_size", "minimum of 75"),
    ("input_choice_below_minimum", "params: {backbone: {choice: [resnet18, inception_v3]}, input_size: {choice: [48, 96]}}",
     "params.input_size", "int range"),
    ("input_range_below_minimum", "params: {backbone: inception_v3, input_size: {int: [32, 64]}}", "params.input_size", "75"),
    ("unknown_sampler", "search: {sampler: bayes}\nparams: {epochs: 1}", "search.sampler", "tpe"),
    ("old_scheduler_key", "search: {scheduler: hyperband}\nparams: {epochs: 1}", "search.scheduler", "now search.asha"),
    ("old_grace_period_key", "search: {grace_period: 2}\nparams: {epochs: 1}", "search.grace_period", "now search.asha.grace_period"),
    ("asha_not_a_mapping", "search: {asha: hyperband}\nparams: {epochs: 1}", "search.asha", "false (no early stopping)"),
    ("asha_typo", "search: {asha: {grace_periods: 2}}\nparams: {epochs: 1}", "search.asha.grace_periods", "did you mean 'grace_period'"),
    ("asha_zero_grace", "search: {asha: {grace_period: 0}}\nparams: {epochs: 1}", "search.asha.grace_period", ">= 1"),
    ("asha_reduction_one", "search: {asha: {reduction_factor: 1}}\nparams: {epochs: 1}", "search.asha.reduction_factor", ">= 2"),
    ("train_on_public_in_a_trial", "params: {train_on_public: true}", "params.train_on_public", "retrain.params.train_on_public"),
    ("drop_path_without_stochastic_depth", "params: {backbone: vgg11, drop_path: {uniform: [0.0, 0.2]}}", "params.drop_path", "no stochastic depth"),
    ("stem_pool_off_without_a_stem_pool", "params: {backbone: {choice: [resnet10t, mobilenetv3_small_100]}, stem_pool: {choice: [true, false]}}", "params.stem_pool", "mobilenetv3_small_100"),
    ("log_int_range_from_zero", "params: {head_hidden: {int: [0, 512], log: true}}", "params.head_hidden.int", "above 0"),
    ("int_step_past_a_bound", "params: {crop: {int: [0, 8], step: 4}}", "params.crop.int", "got 4"),
    ("unknown_optimizer", "params: {optimizer: adamww}", "params.optimizer", "did you mean"),
    ("unknown_lr_scheduler", "params: {scheduler: step}", "params.scheduler", "cosine"),
    ("old_metric_key", "metric: accuracy\nparams: {epochs: 1}", "metric", "now objectives"),
    ("unknown_objective", "objectives: accuracy\nparams: {epochs: 1}", "objectives", "val_accuracy"),
    ("negative_resources", "resources: {cpus_per_trial: -1}\nparams: {epochs: 1}", "resources.cpus_per_trial", ">= 0"),
    ("bad_seeds", "retrain: {seeds: []}\nparams: {epochs: 1}", "retrain.seeds", "non-empty"),
    ("negative_time_budget", "search: {time_budget_minutes: -1}\nparams: {epochs: 1}", "search.time_budget_minutes", ">= 0"),
    ("negative_checkpoint_pace", "search: {checkpoint: -5}\nparams: {epochs: 1}", "search.checkpoint", "seconds > 0"),
    ("old_checkpoint_pace_key", "search: {checkpoint_every_s: 60}\nparams: {epochs: 1}", "search.checkpoint_every_s", "now search.checkpoint"),
    ("zero_top_k", "retrain: {top_k: 0}\nparams: {epochs: 1}", "retrain.top_k", ">= 1"),
    ("text_top_k", "retrain: {top_k: two}\nparams: {epochs: 1}", "retrain.top_k", "int"),
    ("text_drop_duplicates", "search: {drop_duplicates: yes please}\nparams: {epochs: 1}", "search.drop_duplicates", "bool"),
    ("zero_samples", "search: {num_samples: 0}\nparams: {epochs: 1}", "search.num_samples", ">= 1"),
    ("negative_sampler_seed", "search: {seed: -3}\nparams: {epochs: 1}", "search.seed", "[0, 4294967295]"),
    ("negative_retrain_seed", "retrain: {seeds: [0, -1]}\nparams: {epochs: 1}", "retrain.seeds", "got -1"),
    ("retrain_param_typo", "retrain: {params: {erase_prb: 0.5}}\nparams: {epochs: 1}", "retrain.params.erase_prb", "did you mean 'erase_prob'"),
    ("retrain_param_out_of_range", "retrain: {params: {erase_prob: 2}}\nparams: {epochs: 1}", "retrain.params.erase_prob", "[0, 1]"),
    ("retrain_param_distribution", "retrain: {params: {lr: {loguniform: [0.001, 0.01]}}}\nparams: {epochs: 1}", "retrain.params.lr", "one fixed value"),
    ("retrain_param_epochs", "retrain: {params: {epochs: 9}}\nparams: {epochs: 1}", "retrain.params.epochs", "retrain.epochs"),
    ("retrain_param_model", "retrain: {params: {backbone: resnet18}}\nparams: {epochs: 1}", "retrain.params.backbone", "changes the model"),
    ("retrain_drop_path_on_vgg", "retrain: {params: {drop_path: 0.1}}\nparams: {backbone: {choice: [resnet10t, vgg11]}}", "retrain.params.drop_path", "vgg11"),
    ("retrain_param_searched", "retrain: {params: {lr: 0.01}}\nparams: {lr: {loguniform: [0.001, 0.1]}}", "retrain.params.lr", "params.lr is searched"),
    ("keep_best_param_on_public", "retrain: {params: {train_on_public: true}}\nparams: {keep_best: true}", "params.keep_best", "train_on_public"),
    ("old_train_on_public_key", "retrain: {train_on_public: true}\nparams: {epochs: 1}", "retrain.train_on_public", "now retrain.params.train_on_public"),
    ("retrain_keep_best_on_public", "retrain: {params: {train_on_public: true, keep_best: true}}\nparams: {epochs: 1}", "retrain.params.keep_best", "train_on_public"),
    ("no_params", "search: {num_samples: 2}", "params", "required"),
    ("top_level_list", "- a\n- b", "", "expected a mapping"),
    ("invalid_yaml", "params: {lr: [1, 2\n", "", "not valid YAML"),
    ("not_tunable_key", "params: {extra: 1}", "params.extra", "unknown key"),
    # NaN and infinities: every comparison with NaN is false, so no bound check would catch it
    ("nan_time_budget", "search: {time_budget_minutes: .nan}\nparams: {epochs: 1}", "search.time_budget_minutes", "not a finite number"),
    ("negative_retrain_budget", "retrain: {time_budget_minutes: -5}\nparams: {epochs: 1}", "retrain.time_budget_minutes", ">= 0"),
    ("retrain_budget_without_a_cap", "retrain: {time_budget_minutes: 60}\nparams: {epochs: 1}", "retrain.time_budget_minutes", "needs retrain.epochs"),
    ("nan_retrain_budget", "retrain: {time_budget_minutes: .nan}\nparams: {epochs: 1}", "retrain.time_budget_minutes", "not a finite number"),
    # numbers no float holds, or that no parser reads
    ("huge_int_setting", "search: {num_samples: 1" + "0" * 30 + "}\nparams: {epochs: 1}", "search.num_samples", "too large"),
    ("huge_int_param", "params: {epochs: 1" + "0" * 400 + "}", "params.epochs", "too large"),
    ("int_too_long_to_read", "params: {epochs: 1" + "0" * 5000 + "}", "", "too long to read"),
    ("step_below_float_precision", "params: {dropout: {uniform: [0.0, 0.5], step: 5.0e-324}}", "params.dropout.step", "too fine"),
    ("step_too_fine", "params: {dropout: {uniform: [0.0, 0.5], step: 1.0e-300}}", "params.dropout.step", "too fine"),
    ("data_not_a_path", "data: [a.csv]\nparams: {epochs: 1}", "data", "a file path"),
    ("data_empty", "data: ''\nparams: {epochs: 1}", "data", "a file path"),
    ("nan_range_end", "params: {dropout: {uniform: [.nan, 0.5]}}", "params.dropout.uniform[0]", "not a finite number"),
    ("inf_fixed_value", "params: {lr: .inf}", "params.lr", "not a finite number"),
    ("nan_retrain_param", "retrain: {params: {erase_prob: .nan}}\nparams: {epochs: 1}", "retrain.params.erase_prob", "not a finite number"),
    ("nan_default", "params: {lr: {loguniform: [1.0e-4, 1.0e-2], default: .nan}}", "params.lr.default", "not a finite number"),
    ("duplicate_retrain_seed", "retrain: {seeds: [0, 1, 0]}\nparams: {epochs: 1}", "retrain.seeds", "given twice"),
    ("negative_plateau", "search: {plateau_trials: -1}\nparams: {epochs: 1}", "search.plateau_trials", ">= 0"),
]


@pytest.fixture
def never_read(tmp_path) -> Path:
    """A data file that is not FER2013 at all: the checks under test must refuse before any
    data is read, so none of them needs the real sample."""
    path = tmp_path / "never-read.csv"
    path.write_text("not,a,fer2013,file\n")
    return path


@pytest.mark.parametrize("case,text,key,words", BAD_SPACES, ids=[c[0] for c in BAD_SPACES])
def test_bad_space_exits_2_naming_file_and_key(case, text, key, words, tmp_path, capsys, never_read):
    space = tmp_path / f"{case}.yaml"
    space.write_text(text)
    out = tmp_path / "results"
    code = main([str(space), "--data", str(never_read), "--output", str(out), "--name", "x"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, f"one line expected: {err!r}"
    assert str(space) in err
    if key:
        assert f": {key}:" in err, err
    assert words in err, err
    assert not ray.is_initialized(), "Ray must not start for a bad space"
    assert not (out / "x").exists(), "nothing may be written for a bad space"


def test_missing_space_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert "no such search-space file" in capsys.readouterr().err


def test_missing_data_names_kaggle_and_flag(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    assert main([str(space), "--data", str(tmp_path / "fer2013.csv")]) == 2
    err = capsys.readouterr().err
    assert "fer2013.csv" in err and "Kaggle" in err and "--data" in err


@pytest.mark.parametrize("flags,key", [
    (["--seed", "-3"], "search.seed"),
    (["--seed", "4294967296"], "search.seed"),
    (["--retrain-epochs", "100001"], "retrain.epochs"),
])
def test_command_line_overrides_obey_the_rules_the_file_obeys(tmp_path, capsys, never_read,
                                                              flags, key):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    out = tmp_path / "results"
    assert main([str(space), "--data", str(never_read), "--output", str(out), "--name", "x",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flags[0] in err and f": {key}: " in err, err
    assert not ray.is_initialized() and not (out / "x").exists()


def test_bad_cli_numbers_exit_2(tmp_path, capsys, never_read):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    assert main([str(space), "--data", str(never_read), "--num-samples", "0"]) == 2
    assert "--num-samples" in capsys.readouterr().err
    assert main([str(space), "--data", str(never_read), "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err


def test_existing_experiment_is_not_overwritten(tmp_path, capsys, never_read):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    existing = tmp_path / "results" / "taken"
    existing.mkdir(parents=True)
    (existing / "trials.csv").write_text("keep me")
    code = main([str(space), "--data", str(never_read), "--output", str(tmp_path / "results"),
                 "--name", "taken"])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (existing / "trials.csv").read_text() == "keep me"


def test_real_process_exit_code_and_no_traceback(tmp_path):
    space = tmp_path / "typo.yaml"
    space.write_text("params: {dropuot: 0.1}")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "params.dropuot" in proc.stderr


@pytest.mark.parametrize("name", ["smoke", "cpu", "inception", "backbones"])
def test_shipped_spaces_load(name):
    space = load_space(REPO / "spaces" / f"{name}.yaml")
    assert space.search.num_samples >= 1 and space.max_epochs >= 1


def test_input_size_is_conditional_on_backbone():
    """An int range starts at each backbone's minimum: inception_v3 is never proposed below 75."""
    space = load_space(REPO / "spaces" / "backbones.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(80):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, 0.0)
        seen.add((trial.params["backbone"], trial.params["input_size"]))
    inception = {size for b, size in seen if b == "inception_v3"}
    assert inception and min(inception) >= 75
    assert any(b != "inception_v3" and size < 75 for b, size in seen)


def test_fixed_values_are_returned_and_distributions_suggested():
    space = load_space(REPO / "spaces" / "smoke.yaml")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    fixed = space.suggest(trial)
    assert fixed["backbone"] == "resnet10t" and fixed["epochs"] == 2
    assert set(trial.params) == {"lr", "dropout", "weight_decay", "optimizer"}
    assert 1e-4 <= trial.params["lr"] <= 3e-2
    assert round(trial.params["dropout"] * 10) == pytest.approx(trial.params["dropout"] * 10)


def test_space_error_is_a_value_error():
    assert issubclass(SpaceError, ValueError)


def test_resume_refuses_search_overrides_but_retrain_only_takes_retrain_ones(tmp_path, capsys,
                                                                            never_read):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "space.yaml").write_text(GOOD)
    (exp / "run.json").write_text(json.dumps({"data": str(never_read), "overrides": {}}))
    (exp / "summary.json").write_text("{}")  # a finished search: only --retrain-only may go on
    (exp / "trials.csv").write_text("trial_id\n")
    assert main(["--resume", str(exp), "--num-samples", "3"]) == 2
    assert "drop --num-samples" in capsys.readouterr().err
    assert main(["--resume", str(exp), "--top-k", "2"]) == 2
    assert "--top-k" in capsys.readouterr().err
    from search.run import _prepare_resume, build_parser

    args = build_parser().parse_args(["--resume", str(exp), "--retrain-only", "--top-k", "3",
                                      "--retrain-epochs", "4"])
    space, _, _ = _prepare_resume(args)
    assert space.retrain.top_k == 3 and space.retrain.epochs == 4


def test_rung_metric_is_validated_and_defaults_to_the_metric(tmp_path):
    good = tmp_path / "rung.yaml"
    good.write_text("search: {asha: {rung_metric: train_loss}}\nparams: {backbone: resnet10t}\n")
    assert load_space(good).search.asha.rung_metric == "train_loss"
    plain = tmp_path / "plain.yaml"
    plain.write_text("params: {backbone: resnet10t}\n")
    assert load_space(plain).search.asha.rung_metric == ""
    off = tmp_path / "off.yaml"
    off.write_text("search: {asha: false}\nparams: {backbone: resnet10t}\n")
    assert load_space(off).search.asha is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {asha: {rung_metric: train_acc}}\nparams: {backbone: resnet10t}\n")
    with pytest.raises(SpaceError, match=r"search.asha.rung_metric.*train_loss.*train_acc"):
        load_space(bad)


def test_a_space_without_search_settings_gets_the_replay_bench_defaults(tmp_path):
    """Random proposals, and ASHA's first rung at a third of the trials' epochs, where the replay
    bench's rankings settle (bench/README.md): in the scheduler a search builds, in its console
    line, and after --max-epochs cuts the epochs."""
    from search.experiment import build_scheduler, describe_stopping

    path = tmp_path / "plain.yaml"
    path.write_text("params: {backbone: resnet10t, epochs: 12, lr: {loguniform: [1.0e-4, 1.0e-2]}}\n")
    space = load_space(path)
    assert space.search.sampler == "random"
    first_rung = lambda: min(m for m, _ in build_scheduler(space, tmp_path)[0].rungs()[0])  # noqa: E731
    assert first_rung() == 4
    assert "first rung at epoch 4," in describe_stopping(space.search.asha, space.max_epochs)
    space.cap_epochs(2)
    assert first_rung() == 1
    path.write_text("search: {asha: {grace_period: 2}}\nparams: {backbone: resnet10t, epochs: 12}\n")
    space = load_space(path)
    assert first_rung() == 2
    path.write_text("search: {asha: {grace_period: 2.5}}\nparams: {backbone: resnet10t, epochs: 12}\n")
    with pytest.raises(SpaceError, match=r"search.asha.grace_period: must be 'auto'.*got 2.5"):
        load_space(path)


def test_asha_rungs_compare_the_rung_metric(tmp_path, small_data):
    """search.asha.rung_metric reaches the real ASHA: a trial-function whose PublicTest accuracy is the
    same for every config (so ASHA on it would stop nothing) and whose training loss is its lr."""
    from search.experiment import build_tuner
    from search.experiment_folder import ExperimentFolder
    from search.scheduler import read_rungs

    def fake_trial(config, data, threads=1, checkpoint=True):
        from ray import tune

        for epoch in range(1, config["epochs"] + 1):
            tune.report({"epoch": epoch, "val_accuracy": 0.5, "val_loss": 1.0,
                         "train_loss": config["lr"], "trial_finished": epoch == config["epochs"]})

    path = tmp_path / "rungs.yaml"
    path.write_text("search: {sampler: random, seed: 3, num_samples: 8, max_concurrent: 1,\n"
                    "         asha: {grace_period: 1, reduction_factor: 2, rung_metric: train_loss},\n"
                    "         checkpoint: false}\n"
                    "params: {backbone: resnet10t, epochs: 4, lr: {loguniform: [1.0e-4, 1.0e-1]}}\n")
    space = load_space(path)
    experiment = tmp_path / "exp"
    experiment.mkdir()
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        results = build_tuner(space, small_data, experiment, {"cpu": 1, "gpu": 0}, verbose=0,
                              trial_fn=fake_trial).fit()
    finally:
        ray.shutdown()
    epochs = {r.metrics["trial_id"]: (r.config["lr"], r.metrics["training_iteration"]) for r in results}
    assert len(epochs) == 8 and not results.errors
    stopped = [lr for lr, n in epochs.values() if n < 4]
    assert stopped, "ASHA stopped nothing: it did not compare the training loss"
    # What the rungs recorded are the training losses (= each trial's lr; Ray negates a minimised
    # metric), not the constant 0.5.
    rungs = read_rungs(ExperimentFolder(experiment).asha_rungs)[0]
    recorded = {tid: v for _, rung in rungs for tid, v in rung.items()}
    assert recorded and all(-v == pytest.approx(epochs[tid][0]) for tid, v in recorded.items())
    # A restored driver's scheduler reads back exactly those records, one line per record.
    from search.scheduler import ResumableASHA

    path = ExperimentFolder(experiment).asha_rungs
    reloaded = ResumableASHA(path, time_attr="training_iteration", max_t=4, grace_period=1,
                             reduction_factor=2, metric="train_loss", mode="min")
    assert [(m, rec) for m, rec in reloaded.rungs()[0] if rec] == rungs
    assert len(path.read_text().splitlines()) == sum(len(rec) for _, rec in rungs)


def test_retrain_params_are_set_over_every_retrained_config(tmp_path):
    from search.retrain import retrain_configs

    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "retrain: {epochs: 7, seeds: [0, 1], top_k: 2,\n"
                    "          params: {keep_best: true, erase_prob: 0.5, label_smoothing: 0}}\n")
    space = load_space(path)
    assert space.retrain.params == {"keep_best": True, "erase_prob": 0.5, "label_smoothing": 0}
    winners = [{"backbone": "resnet10t", "lr": 0.01, "erase_prob": 0.0, "label_smoothing": 0.1},
               {"backbone": "resnet10t", "lr": 0.002}]  # GOOD searches lr only
    tasks = retrain_configs(space, winners)
    assert [(t["extra"]["member"], t["seed"]) for t in tasks] == [
        ("member-0", 0), ("member-0", 1), ("member-1", 0)]
    for task, winner in zip(tasks, [winners[0], winners[0], winners[1]]):
        assert (task["keep_best"], task["erase_prob"], task["label_smoothing"]) == (True, 0.5, 0)
        assert task["lr"] == winner["lr"] and task["epochs"] == 7  # the rest is the winner's
        TrainConfig.from_dict(task)  # a valid training config


SHIPPED_SPACES = sorted(p for p in (Path(__file__).resolve().parents[1] / "spaces").glob("*.yaml")
                        if p.name != "seed.yaml")  # seed.yaml: search.seed_parity's runs, no space


@pytest.mark.parametrize("path", SHIPPED_SPACES, ids=lambda p: p.name)
def test_every_shipped_space_loads(path):
    """What the README tells users to run must pass the same checks as their own files."""
    space = load_space(path)
    assert space.params and space.search.num_samples >= 1


def _space_with(tmp_path, params: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("params:\n  backbone: resnet10t\n" + params)
    return path


def test_default_config_from_the_file_or_derived(tmp_path):
    space = load_space(_space_with(tmp_path, (
        "  lr: {loguniform: [1.0e-4, 1.0e-1], default: 3.0e-3}\n"
        "  weight_decay: {loguniform: [1.0e-4, 1.0e-2]}\n"       # TrainConfig's 0.05 is outside
        "  dropout: {uniform: [0.0, 0.5]}\n"                     # TrainConfig's 0.0 is inside
        "  crop: {choice: [40, 44]}\n"                           # TrainConfig's 0 is not a choice
        "  epochs: {int: [2, 9], step: 3}\n")))                 # 10 is outside: middle on step
    assert space.default_config() == {"lr": 3e-3, "weight_decay": pytest.approx(1e-3),
                                      "dropout": 0.0, "crop": 40, "epochs": 5}
    assert space.is_default({"lr": 3e-3, "weight_decay": 1e-3, "dropout": 0.0, "crop": 40,
                             "epochs": 5, "backbone": "resnet10t"})
    assert not space.is_default({**space.default_config(), "crop": 44})


@pytest.mark.parametrize("spec,words", [
    ("{uniform: [0.0, 0.5], default: 0.7}", "not a value this uniform can propose"),
    ("{uniform: [0.0, 0.5], step: 0.25, default: 0.3}", "not a value this uniform can propose"),
    ("{choice: [0.0, 0.2], default: 0.1}", "not a value this choice can propose"),
    ("{uniform: [0.0, 0.5], default: .nan}", "dropout"),
    ("{uniform: [0.0, 0.5], default: high}", "must be a number"),
])
def test_a_default_the_search_cannot_propose_is_refused(tmp_path, spec, words):
    with pytest.raises(SpaceError) as e:
        load_space(_space_with(tmp_path, f"  dropout: {spec}\n"))
    assert "params.dropout.default" in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("name", ["..", ".", "../escape", "/abs", "a/b", "a\\b", "", " pad",
                                  "x" * 201, "tab\tname"])
def test_a_name_never_places_a_run_outside_output(tmp_path, capsys, never_read, name):
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    out = tmp_path / "results"
    assert main([str(space), "--data", str(never_read), "--output", str(out), "--name", name]) == 2
    err = capsys.readouterr().err
    assert "--name" in err and "not a folder name" in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before anything is made


def test_a_space_name_that_is_a_path_is_refused(tmp_path, capsys, never_read):
    space = tmp_path / "s.yaml"
    space.write_text("name: ../../etc\n" + GOOD)
    assert main([str(space), "--data", str(never_read), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"name in {space}" in err and "not a folder name" in err
    assert not (tmp_path / "r").exists()


def test_an_output_uri_is_refused_not_made_a_local_folder(tmp_path, capsys, never_read, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "s.yaml"
    space.write_text(GOOD)
    assert main([str(space), "--data", str(never_read), "--output", "s3://bucket/runs"]) == 2
    assert "a URI" in capsys.readouterr().err
    assert not (tmp_path / "s3:").exists()


def test_without_a_time_budget_each_retrained_config_keeps_its_own_epochs(tmp_path):
    """retrain.epochs: 0 means each member's own epochs; the budget planner must not pin them
    all to the winner's."""
    from search.retrain import planned_epochs, retrain_configs

    path = tmp_path / "s.yaml"
    path.write_text(GOOD + "retrain: {top_k: 2}\n")
    space = load_space(path)
    epochs, plan = planned_epochs(space, trial_seconds=600.0, trial_epochs=12)
    assert (epochs, plan) == (0, "")
    winners = [{"backbone": "resnet10t", "lr": 0.01, "epochs": 12},
               {"backbone": "resnet10t", "lr": 0.002, "epochs": 5}]
    assert [t["epochs"] for t in retrain_configs(space, winners, epochs)] == [12, 5]
