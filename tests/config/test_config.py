"""The config, its checks, and the command line generated from it."""

import dataclasses
import os
import subprocess
import sys

import pytest

from helpers import ROOT, run_script
from jaxrec.cli import commands as cli, flags
from jaxrec.models import kernels, rnn
from jaxrec.config.rules import cores_available
from jaxrec.config import (EXECUTION_FIELDS, MAY_CHANGE_IN_STUDY, MAY_CHANGE_ON_RESUME, MEMBER_FIELDS, MODELS,
                           PER_PROCESS_FIELDS, ROLES, SOURCES, BenchmarkOptions, Config, check, choices, fields_with)
from jaxrec.errors import InputError
from jaxrec.models import create_model, load
from jaxrec.core.optim import learning_rate_schedule


def test_defaults_reproduce_the_article():
    c = Config()
    assert (c.epochs, c.learning_rate, c.momentum, c.augment, c.batch_size) == (10, 0.01, 0.9, False, 128)
    assert c.weight_decay == 0 and c.lr_schedule == "constant" and c.dataset == "cifar10"
    assert check(c) is c and check(BenchmarkOptions()) is not None


def test_the_documented_flags_work_as_written(tmp_path):
    c = flags.parse_config(["--seed", "0", "--epochs", "3", "--batch_size", "128", "--dataset", "cifar10",
                            "--workdir", str(tmp_path)])
    assert (c.seed, c.epochs, c.batch_size, c.dataset, c.workdir) == (0, 3, 128, "cifar10", str(tmp_path))


FLAGGED = {f.name for f in dataclasses.fields(Config)} - set(fields_with(Config, "no_flag"))


def test_every_field_is_a_flag_of_the_right_type():
    c = flags.parse_config(["--augment", "--progress=false", "--conv_features", "16,32", "--learning_rate", "0.1",
                            "--data_dir", "/data", "--channels", "1", "--model", "rnn"])
    assert c.augment is True and c.progress is False and c.channels == 1 and c.model == "rnn"
    assert c.conv_features == (16, 32) and c.learning_rate == 0.1 and c.data_dir == "/data"
    parser = flags.Parser()
    flags.add_flags(parser, Config)
    flag_names = {a.dest for a in parser._actions}
    assert FLAGGED <= flag_names and "knobs" not in flag_names  # a recipe's knobs are flags of their own


@pytest.mark.parametrize("argv,message", [
    (["--augment", "maybe"], "argument --augment: expected true or false, got 'maybe'"),
    (["--lr_schedule", "triangle"], "argument --lr_schedule: invalid choice: 'triangle' (choose from "),
    (["--channels", "2"], "argument --channels: invalid choice: 2 (choose from "),
    (["--epochs", "ten"], "argument --epochs: invalid number value: 'ten'"),
    (["--batch_size", "ten"], "argument --batch_size: invalid int value: 'ten'"),
    (["--epochs", "inf"], "argument --epochs: must be a finite number > 0, got 'inf'"),
    (["--momentum", "nan"], "argument --momentum: must be a finite number in [0, 1), got 'nan'"),
])
def test_a_flag_that_does_not_parse_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        flags.parse_config(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and message in err and "--help" in err


@pytest.mark.parametrize("argv,flag", [
    (["train", "--learn", "0.02"], "--learn"),  # would have been --learning_rate
    (["benchmark", "--seeds", "2"], "--seeds"),  # would have been --seeds_per_program
    (["study", "--seeds", "0-1", "--vary", "init", "--epoch", "2"], "--epoch"),
    (["train", "--mod", "rnn"], "--mod"),  # the --model pre-scan does not expand it either
    (["benchmark", "--dataset", "cifar10"], "--dataset cifar10"),  # it times random data: not offered
    (["benchmark", "--epochs", "3"], "--epochs 3"),
    (["benchmark", "--workdir", "runs/x"], "--workdir runs/x"),
])
def test_an_abbreviated_flag_is_refused_not_expanded(argv, flag, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    # Named by the command, whose --help lists its flags.
    assert err.startswith(f"jaxrec {argv[0]}: error: unrecognized arguments: {flag}")
    assert err.endswith(f"(see jaxrec {argv[0]} --help)\n")


def test_enumerated_fields_offer_exactly_what_the_code_implements():
    for model in MODELS:  # every name --model takes has a recipe module that builds a model
        assert create_model(Config(model=model), num_classes=10) is not None
    assert set(choices(rnn.Knobs, "rnn_cell")) == set(rnn.CELLS)
    assert set(choices(Config, "lr_schedule")) == {"constant", "cosine", "step", "linear"}
    for schedule in choices(Config, "lr_schedule"):
        assert learning_rate_schedule(Config(lr_schedule=schedule).optimisation, steps_per_epoch=10)(5) > 0


@pytest.mark.parametrize("changes,refusal", [
    (dict(eval_batch_size=0), "--eval_batch_size 0: must be >= 1"),
    (dict(conv_features=(0,)), "--conv_features 0: must be a non-empty comma-separated list of integers >= 1"),
    (dict(epochs="2"), "--epochs 2: must be of type int | float"),
    (dict(epochs=0), "--epochs 0: must be > 0"),
    (dict(conv_features=()), "--conv_features '': must be a non-empty"),
    (dict(dense_features=0), "--dense_features 0: must be >= 1"),
    (dict(image_size=1), "--image_size 1: must be 0 or >= 8"),
    (dict(momentum=-1.0), "--momentum -1.0: must be in [0, 1)"),
    (dict(warmup_epochs=-1.0), "--warmup_epochs -1.0: must be >= 0"),
    (dict(learning_rate=float("nan")), "--learning_rate nan: must be a finite number > 0"),
    (dict(epochs=float("inf")), "--epochs inf: must be a finite number > 0"),
    (dict(seed=2**32), "--seed 4294967296: must be in [0, 4294967296)"),
    (dict(test_fraction=1.0), "--test_fraction 1.0: must be in (0, 1)"),
    (dict(dataset=""), "--dataset '': must be a TFDS name, cifar10_sample or an image-folder path"),
    (dict(lr_schedule="triangle"), "--lr_schedule triangle: must be one of constant, cosine, step, linear"),
    (dict(nesterov=True, momentum=0.0), "--nesterov with --momentum 0: Nesterov needs momentum > 0"),
    (dict(warmup_epochs=3.0, epochs=2), "--warmup_epochs 3.0 with --epochs 2: the warm-up would never reach"),
])
def test_each_refusal_names_the_field_the_value_and_what_is_allowed(changes, refusal):
    with pytest.raises(InputError) as refused:
        check(Config(**changes))
    assert str(refused.value) == refusal or str(refused.value).startswith(refusal)


def test_a_list_flag_with_an_empty_item_is_refused_not_shortened(capsys):
    with pytest.raises(SystemExit):
        flags.parse_config(["--conv_features", "32,,64"])
    assert "expected comma-separated integers like 32,64,128, got '32,,64'" in capsys.readouterr().err
    assert flags.parse_config(["--conv_features", "32, 64"]).conv_features == (32, 64)


def test_several_bad_settings_are_listed_one_per_line():
    with pytest.raises(InputError) as refused:
        check(Config(epochs=0, top_k=0))
    assert str(refused.value).splitlines() == ["2 settings cannot be used:", "--epochs 0: must be > 0",
                                               "--top_k 0: must be >= 1"]


def test_bad_settings_are_refused_before_jax_starts_or_data_loads(tmp_path):
    code = ("import sys\nfrom jaxrec.cli import main\ntry:\n"
            f"    code = main(['train', '--eval_batch_size', '0', '--dataset', {str(tmp_path / 'missing')!r}])\n"
            "except SystemExit as exit:\n    code = exit.code\n"
            "print('jax imported' if 'jax' in sys.modules else 'jax not imported'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout.strip() == "jax not imported"
    assert result.stderr == ("jaxrec train: error: argument --eval_batch_size: must be >= 1, got '0' "
                             "(see jaxrec train --help)\n")


def test_a_bad_number_names_the_flag_as_typed_even_an_alias(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jaxrec", "evaluate", "--workdir", str(tmp_path), "--batch_size",
                             "-4"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--batch_size: must be >= 1, got '-4'" in result.stderr


def test_the_command_line_runs_as_the_cli_module_too():
    result = subprocess.run([sys.executable, "-m", "jaxrec.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout


def test_the_default_models_settings_are_configs_own():
    # What lets a command that names no --model parse its flags without importing a network.
    assert load(Config().model).knobs is None and not load(Config().model).defaults
    assert flags.own_knobs("rnn") is load("rnn").knobs is not None


def test_a_command_that_names_no_model_parses_its_flags_without_importing_a_network():
    code = ("import sys; from jaxrec.cli import flags; flags.parse_config(['--epochs', '2']); "
            "print('flax' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False"], result.stderr


def test_a_subset_of_fields_can_be_checked_alone():
    saved = Config(nesterov=True, momentum=0.0)  # e.g. a run from before the checks: evaluate it anyway
    assert check(saved, only=["top_k", "num_devices"]) is saved
    with pytest.raises(InputError, match="--top_k 0"):
        check(saved.replace(top_k=0), only=["top_k"])


def test_a_data_set_given_as_a_path_is_recorded_absolute_and_a_name_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert [Config(dataset=d).dataset for d in ("data/x", "./x", "../x", "cifar10", "cifar10_sample")] == [
        str(tmp_path / "data" / "x"), str(tmp_path / "x"), str(tmp_path.parent / "x"), "cifar10", "cifar10_sample"]


def test_config_round_trips_through_json(tmp_path):
    c = Config(conv_features=(4, 8), seed=7, augment=True)
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c


@pytest.mark.parametrize("command", [["jaxrec", "--help"], ["jaxrec", "train", "--help"],
                                     ["experiments/cifar_cnn.py", "--help"]])
def test_help_lists_every_knob(command):
    result = run_script(*command, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    if command[1:] == ["--help"] and command[0] == "jaxrec":
        assert all(name in out for name in ("train", "evaluate", "predict", "benchmark"))
        return
    for name in FLAGGED:
        assert f"--{name}" in out
    assert "cnn (the article's CNN)" in out and "airbench94 (Keller Jordan" in out  # the built-ins, by name


def test_subcommand_help_names_its_own_flags(capsys):
    for command, expected in (("evaluate", ["--workdir", "--which", "--split", "--out", "--dataset", "--top_k"]),
                              ("predict", ["IMAGE_OR_FOLDER", "--workdir", "--json", "--top_k"]),
                              ("benchmark", ["--windows", "--image_shape", "--steps_per_call", "--json"]),
                              ("compare", ["--metric", "Welch's 95% interval"])):  # a description is not %-formatted
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert all(flag in out for flag in expected), command


def test_aliases_add_flag_names_without_shadowing_prefixes():
    aliases, faces = {"data": "dataset"}, os.path.abspath("faces")  # a path is recorded absolute
    assert flags.parse_config(["--data", "faces/"], aliases=aliases).dataset == faces
    assert flags.parse_config(["--dataset", "faces/"], aliases=aliases).dataset == faces
    both = flags.parse_config(["--data", "faces/", "--data_dir", "/tfds"], aliases=aliases)
    assert (both.dataset, both.data_dir) == (faces, "/tfds")
    with pytest.raises(SystemExit):  # without the alias, --data is an ambiguous prefix
        flags.parse_config(["--data", "faces/"])


def test_benchmark_options_are_checked_like_the_config():
    with pytest.raises(InputError, match=r"--windows 0: must be >= 1"):
        check(BenchmarkOptions(windows=0))


def test_every_execution_setting_is_a_knob_and_every_kernel_choice_is_one():
    """Resume and study checks let exactly these change; a kernel knob left out would refuse a resume."""
    names = {field.name for field in dataclasses.fields(Config)}
    assert set(EXECUTION_FIELDS) <= names
    assert {field.name for field in dataclasses.fields(kernels.Kernels)} <= set(EXECUTION_FIELDS)


def test_data_workers_beyond_the_cores_or_with_input_device_are_refused_in_one_line():
    cores = cores_available()
    check(Config(data_workers=cores, input="stream"))
    with pytest.raises(InputError, match=rf"^--data_workers {cores + 1}: must be in \[0, {cores}\] \(the CPU cores"):
        check(Config(data_workers=cores + 1))
    with pytest.raises(InputError, match=r"^--data_workers 1 with --input device: .*drop --data_workers"):
        check(Config(data_workers=1, input="device"))


def test_every_field_has_a_group_and_the_help_lists_the_flags_by_group(capsys):
    groups = ["data", "model", "optimisation", "run", "checkpoints", "execution", "processes"]
    assert [f.metadata["group"] for f in dataclasses.fields(Config)] == sorted(
        (f.metadata["group"] for f in dataclasses.fields(Config)), key=groups.index)  # declared group by group
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    body = out[out.index("\ndata settings:"):]  # past the usage line
    where = [body.index(f"\n{group} settings:") for group in groups]
    assert where == sorted(where)
    assert body.index("--learning_rate") > body.index("\noptimisation settings:") > body.index("--dense_features")
    with pytest.raises(SystemExit):  # a recipe's own knobs: a group of their own, after jaxrec's
        cli.main(["train", "--model", "rnn", "--help"])
    body = capsys.readouterr().out
    assert body.index("\n  --rnn_hidden") > body.index("\n--model rnn's own settings:") > \
        body.index("\n  --join_timeout")


def test_the_field_lists_are_derived_from_the_roles_each_field_declares():
    """How a run computes (execution) may change on resume and when a study continues; what it computes may
    not, but for the few that say so; the lists the package reads are exactly those declarations."""
    execution = set(fields_with(Config, "execution"))
    assert execution <= set(MAY_CHANGE_ON_RESUME) and execution <= set(MAY_CHANGE_IN_STUDY)
    assert {"model", "learning_rate", "batch_size", "seed"}.isdisjoint(MAY_CHANGE_ON_RESUME)
    assert set(MAY_CHANGE_ON_RESUME) - execution == {"dataset", "data_dir", "download", "eval_every_epochs",
                                                     "eval_batch_size", "epochs", "max_steps", "top_k",
                                                     "save_predictions"}
    assert set(EXECUTION_FIELDS) == execution and set(MEMBER_FIELDS) == {"seed", "workdir", *(
        f"{source}_seed" for source in SOURCES)}
    assert set(PER_PROCESS_FIELDS) == {"process_id", "progress"}
    assert {f.name for f in dataclasses.fields(Config) if f.metadata["roles"] - set(ROLES)} == set()


def test_every_config_json_in_results_still_loads():
    """Runs written by earlier versions (results/) load as configs: their fields keep their names."""
    paths = sorted((ROOT / "results").rglob("config.json"))
    assert paths and all(check(Config.load(path), only=["model"]) for path in paths)  # a built-in or a recipe file


def test_a_recipe_s_refusals_are_listed_with_the_settings_refusals(capsys):
    from jaxrec.runtime.setup import prepare

    with pytest.raises(InputError) as refused:
        prepare(Config(model="rnn", norm="batch", warmup_epochs=20.0, epochs=2))
    assert str(refused.value).splitlines()[0] == "2 settings cannot be used:"
    assert str(refused.value).splitlines()[1].startswith("--warmup_epochs 20.0 with --epochs 2")
    assert str(refused.value).splitlines()[2].startswith("--norm batch with --model rnn")
