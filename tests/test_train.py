"""The training loop end to end: outputs, determinism, failure modes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest

from jaxrec.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


def test_same_seed_is_bit_identical_and_another_seed_differs(small_config, tmp_path):
    first = train_and_evaluate(small_config, tmp_path / "a")
    again = train_and_evaluate(small_config, tmp_path / "b")
    other = train_and_evaluate(small_config.replace(seed=1), tmp_path / "c")
    chex.assert_trees_all_equal(first.params, again.params)
    timing = ("train_seconds", "images_per_second", "eval_seconds", "wall_seconds")
    records = [{k: v for k, v in json.loads((tmp_path / d / "metrics.jsonl").read_text()).items() if k not in timing}
               for d in "abc"]
    assert records[0] == records[1]
    assert records[0]["train_loss"] != records[2]["train_loss"]
    assert not np.array_equal(first.params["Dense_1"]["kernel"], other.params["Dense_1"]["kernel"])


def test_augmented_run_on_8_devices(small_config, tmp_path):
    config = small_config.replace(num_devices=8, augment=True, batch_size=64, steps_per_call=2)
    state = train_and_evaluate(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_devices"] == 8 and summary["steps"] == 400 // 64 == int(state.step)
    chex.assert_tree_all_finite(state.params)


def test_indivisible_batch_is_refused_before_loading_data(small_config, tmp_path):
    with pytest.raises(ValueError, match="does not divide evenly over 8 devices"):
        train_and_evaluate(small_config.replace(num_devices=8, batch_size=60, dataset="/nonexistent"), tmp_path)


def test_nan_loss_stops_the_run_naming_the_step(small_config, tmp_path):
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        train_and_evaluate(small_config.replace(learning_rate=1e12, steps_per_call=1), tmp_path)


def test_experiment_script_end_to_end_on_the_shipped_sample(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, like a user's laptop
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "cifar_cnn.py"), "--dataset", "cifar10_sample",
                             "--epochs", "1", "--workdir", str(tmp_path), "--seed", "3"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_second",
            "wall_seconds"} <= set(records[0])
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "epochs", "steps", "train_images_per_second", "param_count",
                "seed", "num_devices", "config", "versions"):
        assert key in summary
    assert summary["param_count"] == 508_618 and summary["seed"] == 3 and summary["steps"] == 3
    assert summary["config"]["dataset"] == "cifar10_sample"
    assert 10 < summary["peak_host_memory_mb"] < 1e6
    assert {"jax", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets"} <= set(summary["versions"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3


def test_script_reports_bad_input_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "cifar_cnn.py"), "--dataset",
                             str(tmp_path / "missing"), "--workdir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: image folder" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
