"""Metric writers (jaxrec.run.writers): metrics.jsonl and TensorBoard event files, read back."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ROOT, SMALL_FLAGS, checkpoint_steps, records, script_command
from jaxrec.core.run_state import RunState
from jaxrec.errors import InputError
from jaxrec.run.checkpoints import checkpoint_dir
from jaxrec.run.writers import TENSORBOARD_DIR, open_writers
from jaxrec.training.loop import train_and_evaluate


def _scalars(workdir):
    events = EventAccumulator(str(workdir / TENSORBOARD_DIR))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_holds_train_scalars_per_call_and_test_scores_per_evaluation(small_config, tmp_path):
    # 12 steps an epoch, 4 per call; checkpoints at 8, 12, 16 and 24
    config = small_config.replace(epochs=2, tensorboard=True, checkpoint_every_steps=8, checkpoint_keep=10)
    train_and_evaluate(config, tmp_path / "straight")
    scalars = _scalars(tmp_path / "straight")
    assert checkpoint_steps(tmp_path / "straight") == [8, 12, 16, 24]
    assert {"train/loss", "train/accuracy", "test/loss", "test/accuracy", "test/macro_f1"} <= set(scalars)
    assert [step for step, _ in scalars["train/loss"]] == [4, 8, 12, 16, 20, 24]
    lines = records(tmp_path / "straight")
    assert [step for step, _ in scalars["test/accuracy"]] == [r["step"] for r in lines] == [12, 24]
    assert [value for _, value in scalars["test/accuracy"]] == pytest.approx([r["test_accuracy"] for r in lines])
    assert scalars["test/macro_f1"][-1][1] == pytest.approx(lines[-1]["test_macro_f1"])

    # As if the process had died after step 20, its last checkpoint at step 8: the resumed run drops
    # the events written past that checkpoint and shows every step once, with the straight run's values.
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    for step in (12, 16, 24):
        shutil.rmtree(checkpoint_dir(tmp_path / "crashed") / str(step))
    train_and_evaluate(config, tmp_path / "crashed")
    resumed = _scalars(tmp_path / "crashed")
    for tag in ("train/loss", "test/accuracy"):
        assert [step for step, _ in resumed[tag]] == [step for step, _ in scalars[tag]]
        assert [value for _, value in resumed[tag]] == pytest.approx([value for _, value in scalars[tag]])


def test_tensorboard_without_tensorboardx_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    with pytest.raises(InputError, match=r"--tensorboard needs tensorboardX.*pip install 'jaxrec\[tensorboard\]'"):
        open_writers(tmp_path, RunState(), resumed=False, tensorboard=True)


@pytest.mark.slow
def test_a_rerun_of_a_run_that_ended_inside_an_epoch_shows_each_step_once(small_config, tmp_path):
    """--max_steps 6 ends inside the 12-step epoch; running the same command again evaluates that
    checkpoint again (for the summary) but TensorBoard still holds one evaluation at step 6."""
    config = small_config.replace(max_steps=6, tensorboard=True)
    for _ in range(2):
        train_and_evaluate(config, tmp_path)
    scalars = _scalars(tmp_path)
    assert [step for step, _ in scalars["test/accuracy"]] == [6]
    assert [step for step, _ in scalars["train/loss"]] == [4, 6]
    assert [r["step"] for r in records(tmp_path)] == [6]
    # The same run's summary says what --dtype auto computed in (on this CPU, float32).
    assert json.loads((tmp_path / "summary.json").read_text())["compute_dtype"] == "float32"


TRAIN_FLAGS = ["--dataset", "cifar10_sample", "--epochs", "2", "--batch_size", "32", "--num_devices", "1",
               "--progress", "false", "--steps_per_call", "2", "--checkpoint_every_steps", "2",
               "--checkpoint_keep", "20", "--tensorboard", *SMALL_FLAGS]


@pytest.mark.slow
def test_tensorboard_after_sigkill_and_rerun_equals_a_straight_run(small_config, tmp_path):
    """SIGKILL gives tensorboardX no chance to flush: the writer is flushed before every checkpoint,
    so the rerun (which drops what lies past its checkpoint and writes that step again) shows every
    step of the straight run, once, with its values."""
    straight = small_config.replace(epochs=2, steps_per_call=2, checkpoint_every_steps=2, checkpoint_keep=20,
                                    tensorboard=True)
    train_and_evaluate(straight, tmp_path / "straight")
    command = script_command("jaxrec", "train", *TRAIN_FLAGS, "--workdir", tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (checkpoint_dir(tmp_path / "killed") / "10").is_dir() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint at step 10"
            time.sleep(0.05)
        process.kill()
    finally:
        process.wait()
    assert process.returncode == -9, process.stderr.read()[-3000:]
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    expected, resumed = _scalars(tmp_path / "straight"), _scalars(tmp_path / "killed")
    for tag in ("train/loss", "train/accuracy", "test/loss", "test/accuracy", "test/macro_f1"):
        assert [step for step, _ in resumed[tag]] == [step for step, _ in expected[tag]], tag
        assert [value for _, value in resumed[tag]] == pytest.approx([value for _, value in expected[tag]], rel=1e-5)


def test_tensorboard_without_tensorboardx_is_refused_before_any_data_is_loaded(tmp_path):
    """With the other settings: one line, before the data is read or the workdir is written."""
    hider = ROOT / "tests" / "data" / "without_tensorflow.py"
    result = subprocess.run([sys.executable, str(hider), "jaxrec", "train", "--dataset", "cifar10_sample",
                             "--tensorboard", "--workdir", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, "JAXREC_TEST_HIDDEN": "tensorboardX", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == ["error: --tensorboard needs tensorboardX, which is not installed; pip "
                                          "install 'jaxrec[tensorboard]' (from a clone: pip install -e "
                                          "'.[tensorboard]'), or drop --tensorboard"]
    assert not (tmp_path / "run").exists()


def test_class_names_the_font_cannot_draw_give_a_plot_and_no_warning(tmp_path):
    import warnings

    import matplotlib

    from jaxrec.run import outputs

    # matplotlib's own font, which has neither glyph, whatever else the machine has installed.
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs.plot_confusion([[1, 0], [0, 1]], ["猫", "🐶"], tmp_path / "confusion.png", "cats and dogs")
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
