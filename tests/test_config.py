"""The config and its command line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrec.config import Config, build_parser, parse_args

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_reproduce_the_article():
    c = Config()
    assert (c.epochs, c.learning_rate, c.momentum, c.augment, c.batch_size) == (10, 0.01, 0.9, False, 128)
    assert c.weight_decay == 0 and c.lr_schedule == "constant" and c.dataset == "cifar10"


def test_the_documented_flags_work_as_written(tmp_path):
    c = parse_args(["--seed", "0", "--epochs", "3", "--batch_size", "128", "--dataset", "cifar10",
                    "--workdir", str(tmp_path)])
    assert (c.seed, c.epochs, c.batch_size, c.dataset, c.workdir) == (0, 3, 128, "cifar10", str(tmp_path))


def test_every_field_is_a_flag_of_the_right_type():
    c = parse_args(["--augment", "--progress=false", "--conv_features", "16,32", "--learning_rate", "0.1",
                    "--data_dir", "/data"])
    assert c.augment is True and c.progress is False
    assert c.conv_features == (16, 32) and c.learning_rate == 0.1 and c.data_dir == "/data"
    with pytest.raises(SystemExit):
        parse_args(["--augment", "maybe"])
    flags = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(Config)} <= flags


def test_config_round_trips_through_json(tmp_path):
    c = Config(conv_features=(4, 8), seed=7, augment=True)
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c


def test_script_help_lists_every_knob():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "cifar_cnn.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for field in dataclasses.fields(Config):
        assert f"--{field.name}" in out


def test_aliases_add_flag_names_without_shadowing_prefixes():
    aliases = {"data": "dataset"}
    assert parse_args(["--data", "faces/"], aliases=aliases).dataset == "faces/"
    assert parse_args(["--dataset", "faces/"], aliases=aliases).dataset == "faces/"
    both = parse_args(["--data", "faces/", "--data_dir", "/tfds"], aliases=aliases)
    assert (both.dataset, both.data_dir) == ("faces/", "/tfds")
    with pytest.raises(SystemExit):  # without the alias, --data is an ambiguous prefix
        parse_args(["--data", "faces/"])
