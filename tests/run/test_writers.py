"""Metric writers (jaxrec.run.writers): metrics.jsonl and TensorBoard event files, read back."""

import shutil
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import checkpoint_steps, records
from jaxrec.errors import InputError
from jaxrec.run.checkpoints import checkpoint_dir
from jaxrec.run.writers import TENSORBOARD_DIR, TensorBoardWriter
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
        TensorBoardWriter(tmp_path, resumed_step=None)
