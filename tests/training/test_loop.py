"""The training loop end to end: outputs, determinism, the run state, failure modes."""

import json
import logging

import chex
import jax
import numpy as np
import pytest

from helpers import records, run_script
from jaxrec.runtime import cpu_devices
from jaxrec.config import Config
from jaxrec.config.rules import cores_available
from jaxrec.errors import InputError
from jaxrec.core.run_state import Record, RunState
from jaxrec.training.loop import RunKeys, call_plan, train_and_evaluate, train_speed


@pytest.mark.slow
def test_same_seed_is_bit_identical_and_another_seed_differs(small_config, tmp_path, caplog):
    first = train_and_evaluate(small_config, tmp_path / "a")
    again = train_and_evaluate(small_config, tmp_path / "b")
    other = train_and_evaluate(small_config.replace(seed=1), tmp_path / "c")
    chex.assert_trees_all_equal(first.params, again.params)
    assert records(tmp_path / "a") == records(tmp_path / "b")
    summary = (tmp_path / "a" / "summary.json").read_bytes()
    with caplog.at_level(logging.INFO, logger="jaxrec"):  # rerun when finished: nothing trains or is rewritten
        chex.assert_trees_all_equal(train_and_evaluate(small_config.replace(progress=not small_config.progress),
                                                       tmp_path / "a").params, first.params)  # how it runs may differ
    assert "nothing left to train" in caplog.text and "with these settings: nothing to do" in caplog.text
    assert (tmp_path / "a" / "summary.json").read_bytes() == summary
    # With another setting that may change on resume, the finished run is evaluated and its files written again.
    train_and_evaluate(small_config.replace(save_predictions=True), tmp_path / "a")
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["config"]["save_predictions"]
    assert records(tmp_path / "a")[0]["train_loss"] != records(tmp_path / "c")[0]["train_loss"]
    assert not np.array_equal(first.params["Dense_1"]["kernel"], other.params["Dense_1"]["kernel"])


@pytest.mark.slow
def test_augmented_run_on_8_devices(small_config, tmp_path):
    config = small_config.replace(num_devices=8, augment=True, batch_size=64, steps_per_call=2)
    state = train_and_evaluate(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_devices"] == 8 and summary["steps"] == 400 // 64 == int(state.step)
    chex.assert_tree_all_finite(state.params)


def test_indivisible_batch_is_refused_before_loading_data(small_config, tmp_path):
    with pytest.raises(ValueError, match="does not divide evenly over 8 devices"):
        train_and_evaluate(small_config.replace(num_devices=8, batch_size=60, dataset="/nonexistent"), tmp_path)


def test_bad_settings_are_refused_before_loading_data(small_config, tmp_path):
    with pytest.raises(InputError, match=r"^--momentum 1.5: must be in \[0, 1\)$"):
        train_and_evaluate(small_config.replace(momentum=1.5, dataset="/nonexistent"), tmp_path)


def test_a_batch_larger_than_the_data_is_refused_as_such_before_any_memory_advice(small_config, tmp_path,
                                                                                  monkeypatch):
    from jaxrec.runtime import memory

    monkeypatch.setattr(memory, "host_available", lambda: 64 << 20)  # the batch would not fit either
    with pytest.raises(InputError, match=r"^the training split has 400 examples, fewer than one batch of 100000; "
                                         r"lower --batch_size$"):
        train_and_evaluate(small_config.replace(batch_size=100_000, num_devices=1), tmp_path)


def test_nan_loss_stops_the_run_naming_the_step(small_config, tmp_path):
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        train_and_evaluate(small_config.replace(learning_rate=1e12, steps_per_call=1), tmp_path)


def test_run_state_sums_do_not_depend_on_how_steps_are_grouped_into_calls():
    losses, accuracies = [0.1, 0.7, 0.3, 1e-9, 0.2], [0.5, 0.25, 1.0, 0.0, 0.125]
    one_call = RunState().after_steps(losses, accuracies, 2.0)
    in_calls = RunState()
    for start in (0, 2, 3):
        end = {0: 2, 2: 3, 3: 5}[start]
        in_calls = in_calls.after_steps(losses[start:end], accuracies[start:end], 2.0 / 3)
    assert (one_call.step, one_call.position) == (in_calls.step, in_calls.position) == (5, 5)
    assert (one_call.loss_sum, one_call.accuracy_sum) == (in_calls.loss_sum, in_calls.accuracy_sum)
    finished = one_call.end_epoch(Record(epoch=1, step=5, train_loss=0.26, train_accuracy=0.375, train_seconds=2.0,
                                         images_per_second=80.0, test_loss=1.5, test_accuracy=0.5))
    assert (finished.epoch, finished.position, finished.loss_sum, finished.step) == (1, 0, 0.0, 5)
    assert RunState.from_json(json.loads(json.dumps(finished.to_json()))) == finished
    line = finished.records[0].to_json()  # metrics.jsonl leaves out what was not measured
    assert list(line)[-2:] == ["test_loss", "test_accuracy"] and "test_macro_f1" not in line


def test_device_calls_stop_where_a_checkpoint_is_due():
    # Epoch of 12 steps, 5 steps per call, a checkpoint every 4 global steps; the run is at step 14.
    run = RunState(step=14, epoch=1, position=2)
    assert call_plan(run, 12, 5, 4) == [(2, 4), (4, 8), (8, 12)]  # global steps 16 and 20
    assert call_plan(run, 12, 5, 0) == [(2, 7), (7, 12)]
    assert call_plan(RunState(step=22, epoch=1, position=10), 12, 5, 0) == [(10, 12)]  # the end of the epoch


def test_the_speed_figure_leaves_out_every_epoch_that_compiled():
    # A run resumed at epoch 3: epochs 1 and 3 compiled (in their own processes), 2 and 4 did not.
    runs = [Record(epoch=e, step=10 * e, train_loss=1.0, train_accuracy=0.5, train_seconds=s, images_per_second=100 / s,
                   includes_compilation=c) for e, (s, c) in enumerate(((9.0, True), (1.0, False), (7.0, True),
                                                                       (3.0, False)), 1)]
    assert train_speed(tuple(runs)) == pytest.approx(200 / 4.0)
    assert train_speed(tuple(runs[:1])) == pytest.approx(100 / 9.0)  # nothing else to go by
    partial = runs[1].replace(train_seconds=2.0, images_per_second=25.0)  # a last epoch of half the images
    assert train_speed((runs[0], runs[1], partial)) == pytest.approx(150 / 3.0)


@pytest.mark.slow
def test_experiment_script_end_to_end_on_the_shipped_sample(tmp_path):
    result = run_script("experiments/cifar_cnn.py", "--dataset", "cifar10_sample", "--epochs", "1", "--workdir",
                        tmp_path, "--seed", "3", default_devices=True)  # as on a user's laptop
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and record["includes_compilation"] is True
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_second",
            "wall_seconds"} <= set(record)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["param_count"] == 508_618 and summary["seed"] == 3 and summary["steps"] == 3
    # One device per core, as many as divide the batch (128).
    assert summary["num_devices"] == cpu_devices.per_core_count(cores_available(), [128])
    assert summary["machine"]["cpu_cores"] == cores_available() and summary["config"]["dataset"] == "cifar10_sample"
    assert summary["test_accuracy"] == record["test_accuracy"] and summary["epochs"] == 1
    assert {"jax", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets"} <= set(summary["versions"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3


def test_script_reports_bad_input_without_a_traceback(tmp_path):
    result = run_script("jaxrec", "train", "--dataset", tmp_path / "missing", "--workdir", tmp_path / "w")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: image folder" in result.stderr and "does not exist" in result.stderr


def test_a_plain_seed_gives_the_keys_it_always_gave_and_each_source_its_own():
    old = jax.random.split(jax.random.key(7), 3)  # init, order, augment: the derivation before named sources
    keys = RunKeys.from_config(Config(seed=7))
    for key, expected in zip((keys.init, keys.shuffle, keys.train), old):
        assert np.array_equal(jax.random.key_data(key), jax.random.key_data(expected))
    order_only = RunKeys.from_config(Config(seed=7, order_seed=8))

    def same(a, b):
        return np.array_equal(jax.random.key_data(a), jax.random.key_data(b))

    assert same(order_only.init, keys.init) and same(order_only.train, keys.train)
    assert not same(order_only.shuffle, keys.shuffle)
    assert Config(seed=7, split_seed=2).source_seeds() == {"init": 7, "order": 7, "augment": 7, "split": 2}


def test_a_tfds_set_that_trains_beyond_memory_is_refused_before_training(tmp_path, monkeypatch):
    """A TFDS set only TensorFlow reads cannot stream: it is decoded, then checked as the other paths
    are (training on every device beside the evaluation call), and refused naming what to lower."""
    import tensorflow_datasets as tfds

    from jaxrec.runtime import memory

    config = Config(dataset="mnist", download=True, epochs=1, batch_size=8, num_devices=1, progress=False,
                    conv_features=(8, 16), dense_features=32)
    monkeypatch.setattr(memory, "host_available", lambda: 24 * 2 * 28 * 28)  # the data, and nothing to train with
    with tfds.testing.mock_data(num_examples=24), pytest.raises(InputError) as refused:
        train_and_evaluate(config, tmp_path)
    assert str(refused.value).startswith("training 1 model(s) on 28x28x1 images in batches of 8")
    assert "lower --batch_size, --eval_batch_size or --image_size" in str(refused.value)
    assert not (tmp_path / "checkpoints").exists()
