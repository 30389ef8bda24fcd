"""Orbax checkpoints: exact resume, interruption by signals, crashes mid-save, device counts, retention."""

import asyncio
import errno
import gc
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import (SMALL, SMALL_FLAGS, checkpoint_steps, records, run_script, script_command, sigterm_after,
                     with_file_size_limit, without_fake_devices)
from jaxrec.cli import commands as cli
from jaxrec.training import loop as train_lib
from jaxrec.run import storage_noise
from jaxrec.run.checkpoints import RunCheckpointer, as_trained, checkpoint_dir, config_differences, load_trained
from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT
from jaxrec.models import config_for
from jaxrec.errors import InputError, SaveError
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.core.run_state import RunState
from jaxrec.core.state import TrainState
from jaxrec.training.loop import train_and_evaluate

# The description of a data set, as DataSplits.describe() gives it, for checkpoints saved by hand.
DATA = {"name": "none", "class_names": ["a", "b"], "image_shape": [1, 1, 1], "mean": [0.0], "std": [1.0],
        "train_examples": 2, "eval_examples": 2}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Two epochs straight through (12 steps each), with 5 steps per call."""
    config = Config(dataset="cifar10_sample", epochs=2, batch_size=32, num_devices=1, progress=False,
                    steps_per_call=5, augment=True, **SMALL)
    workdir = tmp_path_factory.mktemp("straight")
    return config, train_and_evaluate(config, workdir), workdir


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call,stop_after", [(5, 10), (1, 17)])
def test_interrupted_mid_epoch_then_resumed_is_bit_identical(straight_run, monkeypatch, tmp_path, steps_per_call,
                                                             stop_after):
    config, straight, straight_dir = straight_run
    config = config.replace(steps_per_call=steps_per_call)
    sigterm_after(monkeypatch, stop_after)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="To resume, run the same command again") as stopped:
        train_and_evaluate(config, tmp_path)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # put back
    assert stop_after % 12 != 0 and checkpoint_steps(tmp_path)[-1] == stop_after  # saved mid-epoch, at the stop
    monkeypatch.undo()
    resumed = train_and_evaluate(config, tmp_path)
    chex.assert_trees_all_equal(resumed.params, straight.params)
    chex.assert_trees_all_equal(resumed.opt_state, straight.opt_state)
    assert records(tmp_path) == records(straight_dir)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from_step"] == stop_after and summary["steps"] == 24
    # The resumed process compiled again (the rest of the interrupted call, then full-length calls):
    # those epochs are left out of the summary's speed.
    compiled = [json.loads(line)["includes_compilation"] for line in (tmp_path / "metrics.jsonl").open()]
    straight_compiled = [json.loads(line)["includes_compilation"] for line in (straight_dir / "metrics.jsonl").open()]
    assert straight_compiled == [True, False] and compiled == [True, True]


@pytest.mark.slow
def test_checkpoints_every_n_steps_resume_exactly(small_config, tmp_path):
    # Saves at 5, 10, 15, 20 and at the epoch ends 12, 24; calls of 4 steps are cut to land on them.
    config = small_config.replace(epochs=2, steps_per_call=4, checkpoint_every_steps=5, checkpoint_keep=10,
                                  augment=True)
    straight = train_and_evaluate(config, tmp_path / "straight")
    assert checkpoint_steps(tmp_path / "straight") == [5, 10, 12, 15, 20, 24]
    # As if the process had died after step 15: only the checkpoints up to it exist.
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    for step in (20, 24):
        shutil.rmtree(checkpoint_dir(tmp_path / "crashed") / str(step))
    resumed = train_and_evaluate(config, tmp_path / "crashed")
    chex.assert_trees_all_equal(resumed.params, straight.params)
    assert records(tmp_path / "crashed") == records(tmp_path / "straight")


@pytest.mark.slow
def test_other_data_and_fewer_epochs_are_refused(small_config, tmp_path):
    train_and_evaluate(small_config.replace(epochs=2), tmp_path / "run")
    with pytest.raises(InputError, match=r"has trained 24 steps \(2 epochs\), more than --epochs 1 \(12 steps\)"):
        train_and_evaluate(small_config, tmp_path / "run")
    other = tmp_path / "other"
    shutil.copytree(SAMPLE_ROOT, other)
    next((other / "train" / "cat").iterdir()).unlink()
    with pytest.raises(InputError, match=r"trained on other data: train_examples \(checkpoint: 400, now: 399\)"):
        train_and_evaluate(small_config.replace(epochs=3, dataset=str(other)), tmp_path / "run")
    more = tmp_path / "more"  # a class more: arrays of other shapes, named as other data, not as damage
    shutil.copytree(SAMPLE_ROOT, more)
    for split in ("train", "test"):
        shutil.copytree(more / split / "cat", more / split / "lion")
    with pytest.raises(InputError, match=r"trained on other data: class_names \(checkpoint: \[.*\]\); "
                                         r"train_examples"):
        train_and_evaluate(small_config.replace(epochs=3, dataset=str(more)), tmp_path / "run")
    for inside in (more / "train" / "runs", more / "test" / "cat" / "run"):  # class folders of the next run
        with pytest.raises(InputError, match=f"^--workdir {inside} is inside the data set {more}, whose folders"):
            train_and_evaluate(small_config.replace(dataset=str(more)), inside)
        assert not inside.exists()


@pytest.mark.slow
def test_sigterm_stops_the_script_cleanly_and_the_rerun_finishes_identically(small_config, tmp_path):
    config = small_config.replace(epochs=8, steps_per_call=1)
    flags = ["--dataset", "cifar10_sample", "--epochs", "8", "--batch_size", "32", "--num_devices", "1",
             "--steps_per_call", "1", *SMALL_FLAGS, "--progress", "false", "--workdir", str(tmp_path / "run")]
    command = script_command("experiments/cifar_cnn.py", *flags)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "To resume" in stderr and "Traceback" not in stderr
    stopped_at = checkpoint_steps(tmp_path / "run")[-1]
    assert 12 <= stopped_at < 96

    # The rerun goes 12 steps past the stop (--max_steps may change on resume; the schedule stays --epochs').
    rerun = subprocess.run([*command, "--max_steps", str(stopped_at + 12)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from the checkpoint at step {stopped_at}" in rerun.stderr
    straight = train_and_evaluate(config.replace(max_steps=stopped_at + 12), tmp_path / "straight")
    chex.assert_trees_all_equal(load_trained(tmp_path / "run", "latest").params, straight.params)
    assert records(tmp_path / "run") == records(tmp_path / "straight")


def test_sigkill_while_a_save_is_in_flight_leaves_the_previous_checkpoint(tmp_path):
    # A state big enough (2 x 128 MB) that the second save is still being written when the process dies.
    script = textwrap.dedent(f"""
        import os, signal, threading, time, jax.numpy as jnp, optax
        from jaxrec.core.state import TrainState
        from jaxrec.run.checkpoints import RunCheckpointer
        from jaxrec.config import Config
        from jaxrec.core.run_state import Record, RunState
        config = Config()
        state = TrainState.create(apply_fn=None, params={{"w": jnp.zeros((32, 1024, 1024))}},
                                  tx=optax.sgd(0.1, momentum=0.9))
        checkpoints = RunCheckpointer({str(tmp_path)!r}, config)
        data = {DATA!r}
        checkpoints.save(state.replace(step=1), RunState(step=1), data)
        state = state.replace(params={{"w": jnp.ones((32, 1024, 1024))}}, step=2)

        def kill_once_writing():  # saves wait until written, so the kill comes from another thread
            while not any(p.name.startswith("2.") for p in checkpoints.directory.iterdir()):
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_once_writing, daemon=True).start()
        checkpoints.save(state, RunState(step=2), data)
        time.sleep(60)  # not reached: the thread kills the process while step 2 is being written
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    template = jax.eval_shape(lambda: TrainState.create(apply_fn=None, params={"w": jnp.zeros((32, 1024, 1024))},
                                                        tx=optax.sgd(0.1, momentum=0.9)))
    restored = RunCheckpointer(tmp_path, Config()).restore_latest(template, DATA)
    assert restored.meta.run.step == 1 and int(restored.state.step) == 1
    assert float(jnp.abs(restored.state.params["w"]).max()) == 0.0


@pytest.mark.slow
def test_checkpoint_from_8_devices_restores_on_1_and_back(small_config, tmp_path):
    config = small_config.replace(batch_size=64, steps_per_call=2)  # 6 steps per epoch
    train_and_evaluate(config.replace(num_devices=8), tmp_path)
    state = train_and_evaluate(config.replace(num_devices=1, epochs=2), tmp_path)
    assert int(state.step) == 12
    state = train_and_evaluate(config.replace(num_devices=8, epochs=3), tmp_path)
    assert int(state.step) == 18
    chex.assert_tree_all_finite(state.params)
    assert [r["epoch"] for r in records(tmp_path)] == [1, 2, 3]
    assert json.loads((tmp_path / "summary.json").read_text())["num_devices"] == 8


@pytest.mark.slow
def test_latest_and_best_are_both_kept_when_the_best_epoch_is_not_the_last(small_config, tmp_path, monkeypatch):
    accuracies = iter([0.5, 0.9, 0.3, 0.2, 0.1])
    evaluate = train_lib.Evaluator.__call__  # real results (eval.json needs them), scripted accuracy
    monkeypatch.setattr(train_lib.Evaluator, "__call__",
                        lambda self, params: {**evaluate(self, params), "accuracy": next(accuracies)})
    train_and_evaluate(small_config.replace(epochs=5, checkpoint_keep=2), tmp_path)
    assert checkpoint_steps(tmp_path) == [24, 48, 60]  # best (epoch 2) and the latest two
    best, latest = load_trained(tmp_path, "best"), load_trained(tmp_path, "latest")
    assert (best.step, best.epoch, best.test_accuracy) == (24, 2, 0.9)
    assert (latest.step, latest.epoch) == (60, 5)
    assert not jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, best.params, latest.params))


@pytest.mark.parametrize("changes", [dict(lr_schedule="linear"), dict(lr_schedule="cosine"),
                                     dict(warmup_fraction=0.2), dict(lookahead=True)])
def test_more_epochs_are_refused_where_the_run_depends_on_its_length(changes):
    """A schedule, warm-up fraction or lookahead computed from the total steps would change under the
    resumed run; with a constant schedule more epochs simply train on."""
    saved = Config(**changes).to_dict()
    assert config_differences(saved, Config(**changes, epochs=20)) == ["epochs (checkpoint: 10, now: 20)"]
    assert config_differences(Config().to_dict(), Config(epochs=20)) == []
    airbench = config_for("airbench94")
    assert config_differences(airbench.to_dict(), airbench.replace(epochs=12))[0].startswith("epochs")


@pytest.mark.slow
def test_mismatched_config_is_refused_naming_the_field_and_resume_false_starts_over(small_config, tmp_path):
    train_and_evaluate(small_config, tmp_path)
    with pytest.raises(InputError, match=r"conv_features \(checkpoint: \[8, 16\], now: \[8, 24\]\)"):
        train_and_evaluate(small_config.replace(epochs=2, conv_features=(8, 24)), tmp_path)
    with pytest.raises(InputError, match="learning_rate"):
        train_and_evaluate(small_config.replace(epochs=2, learning_rate=0.5), tmp_path)
    state = train_and_evaluate(small_config.replace(conv_features=(8, 24), resume=False), tmp_path)
    assert int(state.step) == 12 and state.params["Conv_1"]["kernel"].shape[-1] == 24
    previous = list(tmp_path.glob("replaced-*"))  # the whole previous run moved aside, not deleted
    assert len(previous) == 1 and (previous[0] / "checkpoints" / "12").is_dir()
    assert json.loads((previous[0] / "summary.json").read_text())["config"]["conv_features"] == [8, 16]
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["conv_features"] == [8, 24]


@pytest.mark.slow
def test_unreadable_latest_checkpoint_is_skipped_for_the_last_complete_one(small_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jaxrec")
    train_and_evaluate(small_config.replace(epochs=2), tmp_path)
    for path in (checkpoint_dir(tmp_path) / "24" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"torn write")
    state = train_and_evaluate(small_config.replace(epochs=3), tmp_path)
    assert "checkpoint step 24" in caplog.text and "trying another" in caplog.text
    assert "resuming from the checkpoint at step 12" in caplog.text
    assert int(state.step) == 36 and checkpoint_steps(tmp_path)[-1] == 36
    assert len(list(tmp_path.glob("checkpoints.unreadable/24-*"))) == 1


def _overwrite_array_bytes(workdir, step):
    """Overwrites 4 KiB in the middle of the largest array data file of a checkpoint, as a bad disk would."""
    files = [p for p in (checkpoint_dir(workdir) / str(step) / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    largest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b"\xff" * 4096
    largest.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_checkpoint_is_never_trained_or_evaluated(small_config, tmp_path, capsys):
    run, config = tmp_path / "run", small_config.replace(epochs=2)
    train_and_evaluate(config, run)
    _overwrite_array_bytes(run, 24)
    # evaluate falls back to the previous checkpoint, as training does, and says so (cli logs to stderr)
    assert cli.main(["evaluate", "--workdir", str(run), "--which", "latest"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint step 24" in err and "using checkpoint step 12" in err and "Traceback" not in err
    assert json.loads((run / "eval_test_latest.json").read_text())["accuracy"] == records(run)[0]["test_accuracy"]
    # As a user runs it: the two lines are the whole story (it was ~800 lines of TensorStore's tracebacks).
    result = run_script("jaxrec", "evaluate", "--workdir", run, "--which", "latest")
    assert result.returncode == 0 and len(result.stderr.strip().splitlines()) == 2, result.stderr[-3000:]
    assert "checkpoint step 24" in result.stderr and "TensorStore details" not in result.stderr
    # training moves it aside and resumes from step 12, exactly as if step 24 had never been saved
    train_and_evaluate(config.replace(epochs=3), run)
    train_and_evaluate(config.replace(epochs=3), tmp_path / "straight")
    assert records(run) == records(tmp_path / "straight")
    assert len(list(run.glob("checkpoints.unreadable/24-*"))) == 1
    # a damaged meta file: the same fallback, no JSON traceback; nothing usable: one line
    for meta in (checkpoint_dir(run) / "36" / "meta").rglob("*"):
        if meta.is_file():
            meta.write_text("{not json")
    assert load_trained(run, "latest").step == 24  # the resumed run saved step 24 anew
    for step in checkpoint_steps(run):
        _overwrite_array_bytes(run, step)
    capsys.readouterr()
    assert cli.main(["evaluate", "--workdir", str(run)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: none of the checkpoints") and len(last) < 400
    # The failed reads leave asyncio futures whose "exception was never retrieved" is logged when they
    # are collected: collect them now, not in a later test that reads its own stderr (seen in CI).
    gc.collect()


def one_checkpoint(workdir):
    """A tiny state saved at step 3 in `workdir`: its config, the state, and its meta file."""
    config = Config(**SMALL)
    checkpoints = RunCheckpointer(workdir, config)
    state = TrainState.create(apply_fn=None, params={"w": jnp.arange(4.0)}, tx=optax.sgd(0.1))
    checkpoints.save(state, RunState(step=3), DATA)
    checkpoints.close()
    return config, state, checkpoint_dir(workdir) / "3" / "meta" / "metadata"


def test_arrays_that_do_not_match_their_checksum_are_not_restored(tmp_path, caplog):
    config, state, meta_file = one_checkpoint(tmp_path)
    meta = json.loads(meta_file.read_text())
    assert meta["checksum"] and len(meta["checksum"]) == 64
    # The bytes on disk were written for other values (as a flipped bit would make them).
    meta_file.write_text(json.dumps({**meta, "checksum": "0" * 64}))
    reader = RunCheckpointer(tmp_path, config)
    with pytest.raises(InputError, match="none of the checkpoints"):
        reader.restore_latest(state, DATA)
    reader.close()
    assert "do not match the checksum saved with them" in caplog.text


@pytest.mark.slow
def test_a_failing_save_stops_at_once_keeps_the_earlier_checkpoints_and_the_rerun_resumes(tmp_path):
    common = ["train", "--dataset", "cifar10_sample", "--batch_size", "32", "--progress", "false", *SMALL_FLAGS]
    run = ["--workdir", str(tmp_path / "run")]
    assert cli.main([*common, *run, "--epochs", "1"]) == 0  # only the limited run needs a process of its own
    env = without_fake_devices(os.environ)
    started = time.time()  # a file-size limit smaller than the checkpoint's array file, as a full disk would be
    limited = subprocess.run(with_file_size_limit(script_command("jaxrec", *common, *run, "--epochs", "3"), 64),
                             capture_output=True, text=True, env=env, timeout=300)
    assert limited.returncode == 2 and time.time() - started < 120
    last = limited.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot save the checkpoint of step 24") and "file-size limit" in last
    assert "The last good checkpoint: step 12" in last
    # No traceback through jaxrec or Orbax (it was ~590 lines of them), nor the dozens of "Event loop
    # is closed" tracebacks TensorStore's threads print after a failed save.
    assert "Traceback" not in limited.stderr and "Event loop is closed" not in limited.stderr
    assert checkpoint_steps(tmp_path / "run") == [12]
    assert [r["epoch"] for r in records(tmp_path / "run")] == [1]  # no line for the epoch that was not saved
    assert cli.main([*common, *run, "--epochs", "3"]) == 0
    # From the last good checkpoint; that a resumed run equals a straight one is tested above.
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from_step"] == 12 and summary["steps"] == 36
    assert [r["epoch"] for r in records(tmp_path / "run")] == [1, 2, 3]


def test_nan_parameters_are_never_saved(tmp_path):
    checkpoints = RunCheckpointer(tmp_path, Config())
    state = TrainState.create(apply_fn=None, params={"w": jnp.array([1.0, jnp.nan])}, tx=optax.sgd(0.1))
    with pytest.raises(FloatingPointError, match="NaN or inf at step 3; no checkpoint was written"):
        checkpoints.save(state, RunState(step=3), DATA)
    checkpoints.close()
    assert checkpoint_steps(tmp_path) == []


def test_a_good_save_puts_stderr_back_with_what_was_printed_during_it(tmp_path, monkeypatch, capsys):
    checkpoints = RunCheckpointer(tmp_path, Config())
    save = checkpoints.manager.save

    def save_and_warn(*args, **kwargs):
        print("a warning from the storage layer", file=sys.stderr)
        return save(*args, **kwargs)

    monkeypatch.setattr(checkpoints.manager, "save", save_and_warn)
    stderr = sys.stderr
    state = TrainState.create(apply_fn=None, params={"w": jnp.arange(4.0)}, tx=optax.sgd(0.1))
    checkpoints.save(state, RunState(step=3), DATA)
    checkpoints.close()
    assert sys.stderr is stderr and checkpoint_steps(tmp_path) == [3]
    assert "a warning from the storage layer" in capsys.readouterr().err


class _Unraisable:
    """An object whose clean-up fails, as TensorStore's callbacks do after Orbax's loop has closed."""

    def __init__(self, error: Exception):
        self.error = error

    def __del__(self):
        raise self.error


def test_after_a_failed_save_only_the_storage_layers_noise_is_dropped(tmp_path, monkeypatch, capsys):
    passed_on = []  # what reaches the unraisable hook the storage filter wraps
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: passed_on.append(str(unraisable.exc_value)))
    checkpoints = RunCheckpointer(tmp_path, Config())
    stderr = sys.stderr

    def fail_with_noise():
        def noise():  # in a thread of its own, as TensorStore's are
            _Unraisable(RuntimeError("Event loop is closed"))
            _Unraisable(ValueError("somebody else's clean-up failed"))

        thread = threading.Thread(target=noise)
        thread.start()
        thread.join()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.manager, "wait_until_finished", fail_with_noise)
    state = TrainState.create(apply_fn=None, params={"w": jnp.arange(4.0)}, tx=optax.sgd(0.1))
    with pytest.raises(SaveError, match="cannot save the checkpoint of step 3"):
        checkpoints.save(state, RunState(step=3), DATA)
    print("the caller's own line", file=sys.stderr)
    err = capsys.readouterr().err
    assert "Event loop is closed" not in err and "the caller's own line" in err
    assert passed_on == ["somebody else's clean-up failed"]  # not the storage layer's: still reported
    assert sys.stderr is stderr  # a library call leaves the caller's stderr alone


def test_load_trained_without_checkpoints_names_the_fix(tmp_path):
    with pytest.raises(InputError, match="holds no checkpoints"):
        load_trained(tmp_path)
    (tmp_path / "study_spec.json").write_text("{}")  # a seed study's folder: its runs are its seed folders
    with pytest.raises(InputError, match=rf"^{tmp_path} holds a seed study, whose runs are its seed folders: pass "
                                         rf"one of them, --workdir {tmp_path}/seed_<n>$"):
        load_trained(tmp_path)
    with pytest.raises(InputError, match=rf"^{tmp_path}/study_spec.json is a file, not a run's folder; pass --workdir "
                                         rf"the folder a run trained in \(it holds config.json and checkpoints/\)$"):
        load_trained(tmp_path / "study_spec.json")


@pytest.mark.parametrize("missing", ["run", "checksum", "items"])  # what the metas of jaxrec before 0.2 lacked
def test_a_checkpoint_written_before_jaxrec_0_2_is_refused_in_one_line_and_kept(tmp_path, missing):
    config, state, meta_file = one_checkpoint(tmp_path)
    meta_file.write_text(json.dumps({k: v for k, v in json.loads(meta_file.read_text()).items() if k != missing}))
    reader = RunCheckpointer(tmp_path, config)
    with pytest.raises(InputError, match=r"step 3 .* written by jaxrec before 0\.2.*--resume=false") as refused:
        reader.restore_latest(state, DATA)
    reader.close()
    assert "\n" not in str(refused.value) and meta_file.exists()  # refused, not skipped or moved aside


def grouped_state(groups):
    """A tiny state whose optimizer has the parameter groups `groups` ('plain' holds the parameter)."""
    labels = lambda params: jax.tree_util.tree_map(lambda _: "plain", params)  # noqa: E731
    tx = optax.multi_transform({name: optax.sgd(optax.constant_schedule(0.1), momentum=0.9) for name in groups}, labels)
    return TrainState.create(apply_fn=None, params={"w": jnp.arange(4.0)}, tx=tx)


def test_a_checkpoint_with_an_optimizer_group_this_version_no_longer_builds_restores(tmp_path):
    """An older jaxrec built every parameter group whenever any was used (airbench94's whitening-bias
    group for a cnn with --norm_bias_lr_scale): its checkpoints resume and evaluate, the unused group's
    entries left. A group the run needs that the checkpoint lacks is still refused."""
    config = Config(**SMALL)
    old = grouped_state(("plain", "frozen", "retired"))
    old = old.apply_gradients(grads={"w": jnp.ones(4)})
    writer = RunCheckpointer(tmp_path, config)
    writer.save(old, RunState(step=1), DATA)
    writer.close()
    reader = RunCheckpointer(tmp_path, config)
    restored = reader.restore_latest(grouped_state(("plain", "frozen")), DATA)
    reader.close()
    chex.assert_trees_all_equal(restored.state.params, old.params)
    chex.assert_trees_all_equal(restored.state.opt_state.inner_states["plain"],
                                old.opt_state.inner_states["plain"])
    with pytest.raises(InputError, match="none of the checkpoints"):
        RunCheckpointer(tmp_path, config).restore_latest(grouped_state(("plain", "norm_bias")), DATA)


def test_a_resume_where_dtype_auto_resolves_to_another_type_is_refused(tmp_path):
    """--dtype auto is float32 on a CPU, bfloat16 on an accelerator: the checkpoint records what it
    resolved to, and a resume that would compute in another type is refused in one line. (A checkpoint
    made on a GPU is stood for by rewriting the recorded type.)"""
    from helpers import small_state

    config = config_for("airbench94", conv_features=(4, 4, 4), whiten=False)
    state = small_state(config, num_classes=2)
    RunCheckpointer(tmp_path, config).save(state, RunState(step=1), DATA)
    [meta_file] = [p for p in (checkpoint_dir(tmp_path) / "1").rglob("*") if p.is_file() and '"compute_dtype"' in
                   p.read_text(errors="ignore")]
    assert json.loads(meta_file.read_text())["compute_dtype"] == "float32"
    meta_file.write_text(meta_file.read_text().replace('"compute_dtype": "float32"', '"compute_dtype": "bfloat16"'))
    with pytest.raises(InputError, match=r"trained in bfloat16 \(--dtype auto\) and --dtype auto computes in float32 "
                                         r"here; pass --dtype bfloat16 to resume it as it trained"):
        RunCheckpointer(tmp_path, config).restore_latest(state, DATA)
    restored = RunCheckpointer(tmp_path, config.replace(dtype="bfloat16")).restore_latest(state, DATA)
    assert restored.meta.run.step == 1
    # Evaluation and prediction compute as the run trained, not as auto resolves where they run.
    assert as_trained(restored.meta).dtype == "bfloat16" and restored.meta.config["dtype"] == "auto"


class _CppFuture:
    """An awaitable that is not a coroutine, as TensorStore's futures are: asyncio wraps it in a task of its own,
    so an error it ends with has no Python frame but asyncio's."""

    def __init__(self, future: asyncio.Future):
        self.future = future

    def __await__(self):
        return self.future.__await__()


def test_a_storage_error_left_in_an_asyncio_task_is_dropped_and_any_other_is_logged(caplog):
    """A damaged checkpoint's read fails in TensorStore's futures, which nobody awaits once jaxrec has moved on to
    another checkpoint: asyncio logs each when it is collected, a traceback after jaxrec's own lines (seen in CI)."""
    storage_noise.install()
    loop = asyncio.new_event_loop()
    for text in ('FAILED_PRECONDITION: Error reading "params.Dense_0.kernel/0.0" in OCDBT database', "not storage"):
        future = loop.create_future()
        future.set_exception(ValueError(text))
        loop.run_until_complete(asyncio.wait([asyncio.ensure_future(_CppFuture(future), loop=loop)]))
        del future
    loop.close()
    gc.collect()
    logged = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "never retrieved" in r.getMessage()]
    # Only this test's two errors count: another test's task may be collected here too.
    assert sum("not storage" in m for m in logged) == 1 and not any("OCDBT" in m for m in logged)
