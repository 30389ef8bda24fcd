"""--input stream: the same batches as the on-device path (bit for bit), exact resume, evaluation that
counts every example once, the choice of --auto, --max_steps, and streaming's failures (an unreadable
file, a killed worker, Ctrl-C) as one line with the run saved."""

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import chex
import numpy as np
import pytest

from helpers import PRE, SMALL, SMALL_FLAGS, checkpoint_steps, records, script_command, sigterm_after, small_state, without_fake_devices
from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT, load_data
from jaxrec.data.sources import stream_splits
from jaxrec.data.stream import StreamError
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.models import create_model
from jaxrec.runtime import memory
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.studies.study import StudySpec, run_study
from jaxrec.training import inputs
from jaxrec.training.loop import train_and_evaluate, train_group
from jaxrec.core.parallel import replicate, select_devices

BASE = Config(dataset="cifar10_sample", epochs=2, batch_size=32, num_devices=2, progress=False, steps_per_call=5,
              **SMALL)


def outputs(workdir: Path) -> tuple[list[dict], dict]:
    return records(workdir), json.loads((workdir / "eval.json").read_text())


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    """The reference: the on-device path, augmented, 2 epochs of 12 steps on 2 devices."""
    workdir = tmp_path_factory.mktemp("device")
    return train_and_evaluate(BASE.replace(augment=True, input="device"), workdir), workdir


def test_a_streamed_run_trains_and_scores_bit_for_bit_as_the_on_device_run(device_run, tmp_path):
    # In this process; with worker processes: the stopped-and-resumed run below.
    reference, reference_dir = device_run
    state = train_and_evaluate(BASE.replace(augment=True, input="stream", data_workers=0), tmp_path)
    chex.assert_trees_all_equal(state.params, reference.params)
    assert outputs(tmp_path) == outputs(reference_dir)
    assert json.loads((tmp_path / "summary.json").read_text())["input"] == "stream"


@pytest.mark.slow
def test_airbench_augmentation_and_batchnorm_stream_bit_for_bit_too(tmp_path):
    # Calls of 4 steps (4, 4, 4): one program per path to compile; the calls cut short are BASE's, above.
    config = BASE.replace(epochs=1, translate=2, flip="alternating", tta=2, norm="batch", steps_per_call=4)
    device = train_and_evaluate(config.replace(input="device"), tmp_path / "device")
    streamed = train_and_evaluate(config.replace(input="stream"), tmp_path / "stream")
    chex.assert_trees_all_equal(streamed.params, device.params)
    chex.assert_trees_all_equal(streamed.model_state, device.model_state)  # the BatchNorm statistics
    assert outputs(tmp_path / "stream") == outputs(tmp_path / "device")


@pytest.mark.slow
def test_a_streamed_run_stopped_mid_epoch_resumes_at_the_same_example(device_run, monkeypatch, tmp_path):
    reference, reference_dir = device_run
    config = BASE.replace(augment=True, input="stream", data_workers=2)
    sigterm_after(monkeypatch, 7)
    with pytest.raises(TrainingInterrupted):
        train_and_evaluate(config, tmp_path)
    assert checkpoint_steps(tmp_path) == [10]  # the call in flight (steps 6-10) finished, then the save
    monkeypatch.undo()
    resumed = train_and_evaluate(config, tmp_path)
    chex.assert_trees_all_equal(resumed.params, reference.params)
    assert outputs(tmp_path) == outputs(reference_dir)


def test_streamed_evaluation_counts_every_example_once_with_an_uneven_last_batch():
    config = Config(dataset="cifar10_sample", **SMALL)
    devices = select_devices(2)
    data = load_data(config.data_plan)
    _, streamed = stream_splits(config.data_plan)
    apply = create_model(config, 10, for_eval=True).apply
    variables = replicate(small_state(config).eval_variables, devices)
    # 100 examples in batches of 48: the last one holds 4, and 44 padding examples that must not count.
    on_device = Evaluator(apply, data.eval, PRE, devices, 48)
    reader = Evaluator(apply, streamed, PRE, devices, 48, workers=0)
    try:
        first, again = reader(variables), reader(variables)  # the second reads the split anew, from its start
        probabilities = reader.probabilities(variables)
    finally:
        reader.close()
    expected = on_device(variables)
    assert np.sum(first["confusion"]) == 100 == first["count"]
    chex.assert_trees_all_equal(first, expected)
    chex.assert_trees_all_equal(again, expected)
    np.testing.assert_array_equal(probabilities, on_device.probabilities(variables))


def memory_for_training_only(config: Config) -> int:
    """Bytes that hold the small model's streamed training and evaluation on one device (its readers keep
    a few batches: fewer bytes than the sample's 600 images, which the device path holds)."""
    train = stream_splits(config.data_plan)[0]
    streamed = inputs.stream_bytes(config, (32, 32, 3), 10, select_devices(config.num_devices), len(train))
    return max(streamed)


def test_auto_streams_what_does_not_fit_and_device_is_refused_naming_stream(monkeypatch, tmp_path, caplog):
    config = BASE.replace(num_devices=1, max_steps=3, eval_batch_size=50)
    monkeypatch.setattr(memory, "host_available", lambda: memory_for_training_only(config))
    with pytest.raises(InputError, match=r"needs about .* of memory .*; or pass --input stream"):
        train_and_evaluate(config.replace(input="device"), tmp_path / "device")
    with caplog.at_level(logging.INFO):
        train_and_evaluate(config, tmp_path / "auto")
    assert "input: streamed from the files (--input auto): " in caplog.text
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["input"] == "stream"


def test_a_seed_group_is_refused_streaming_before_anything_is_read_or_written(tmp_path):
    configs = [BASE.replace(seed=s, input="stream", workdir=str(tmp_path / str(s))) for s in (0, 1)]
    with pytest.raises(InputError, match="--input stream trains one model per program, and this one has 2"):
        train_group(configs)
    with pytest.raises(InputError, match="--input stream trains one model per program, and this one has 2"):
        run_study(StudySpec(BASE.replace(input="stream"), seeds=(0, 1), vary=("init",)), tmp_path / "study",
                  seeds_per_program=2)
    assert list(tmp_path.iterdir()) == []


def test_auto_keeps_the_device_path_where_the_data_fits(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        train_and_evaluate(BASE.replace(max_steps=2, data_workers=1), tmp_path)
    assert ("input: decoded into memory and copied onto the devices (--input auto); --data_workers 1 only read "
            "streamed data, so none start") in caplog.text  # a worker count that reads nothing is not silent
    assert caplog.text.count("decoding images to") == 1  # the folder listed and probed once, not per path
    assert "--resize" not in caplog.text  # all of one size: nothing to say about resizing
    assert json.loads((tmp_path / "summary.json").read_text())["input"] == "device"
    listed, loaded = load_data(BASE.data_plan, stream_splits(BASE.data_plan)), load_data(BASE.data_plan)
    np.testing.assert_array_equal(listed.train.images, loaded.train.images)
    np.testing.assert_array_equal(listed.eval.labels, loaded.eval.labels)
    assert (listed.mean, listed.std, listed.eval.class_names) == (loaded.mean, loaded.std, loaded.eval.class_names)


@pytest.mark.slow
def test_max_steps_ends_mid_epoch_evaluates_and_a_larger_one_continues_exactly(tmp_path, caplog):
    config = BASE.replace(epochs=3, steps_per_call=4)
    with caplog.at_level(logging.INFO):
        train_and_evaluate(config.replace(max_steps=5), tmp_path / "run")
    assert "after 5 steps (--max_steps; the schedule is 3 epochs)" in caplog.text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 5 and len(summary["test_accuracy_per_epoch"]) == 1
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["count"] == 100
    again = train_and_evaluate(config.replace(max_steps=5), tmp_path / "run")  # the same command: its step is on disk
    assert int(again.step) == 5 and checkpoint_steps(tmp_path / "run") == [5]
    continued = train_and_evaluate(config.replace(max_steps=17), tmp_path / "run")
    straight = train_and_evaluate(config.replace(max_steps=17), tmp_path / "straight")
    chex.assert_trees_all_equal(continued.params, straight.params)
    assert int(continued.step) == 17
    # The schedule is the one of --epochs: a max_steps run is the first steps of the full run.
    with pytest.raises(InputError, match="more than --max_steps 3; pass a larger --max_steps"):
        train_and_evaluate(config.replace(max_steps=3), tmp_path / "run")


@pytest.mark.slow
def test_a_file_unreadable_mid_run_stops_it_in_one_line_saved_and_the_rerun_finishes(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_ROOT, data)
    broken = sorted((data / "test" / "dog").iterdir())[3]
    good = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    # --image_size and --channels: nothing probes the files up front, so the first evaluation meets it.
    config = BASE.replace(dataset=str(data), image_size=32, channels=3, input="stream", data_workers=1)
    with pytest.raises(StreamError, match=rf"cannot read image {broken}: .* Training stopped at step 12 and saved"):
        train_and_evaluate(config, tmp_path / "run")
    assert checkpoint_steps(tmp_path / "run") == [12]
    broken.write_bytes(good)
    train_and_evaluate(config, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from_step"] == 12 and summary["steps"] == 24


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def workers_of(pid: int) -> list[int]:
    return [c for c in children(pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def start_streaming(workdir: Path, *extra: str) -> subprocess.Popen:
    flags = ["train", "--dataset", "cifar10_sample", "--batch_size", "32", "--num_devices", "1", "--steps_per_call",
             "1", "--input", "stream", "--data_workers", "2", "--epochs", "40", "--progress", "false", *SMALL_FLAGS,
             "--workdir", str(workdir), *extra]
    env = without_fake_devices(os.environ)
    return subprocess.Popen(script_command("jaxrec", *flags), stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def wait_for_workers(process: subprocess.Popen, workdir: Path) -> list[int]:
    """The run's worker processes, once it has finished an epoch."""
    deadline = time.time() + 120
    while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.2)
    return workers_of(process.pid)


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_in_one_line_and_the_rerun_resumes(tmp_path):
    process = start_streaming(tmp_path / "run")
    workers = wait_for_workers(process, tmp_path / "run")
    assert len(workers) == 4  # 2 read the training batches, 2 the eval split (kept between evaluations)
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: a data worker process died (exit code -9") and "saved a checkpoint" in last
    assert "Traceback" not in err and not workers_of(process.pid)
    rerun = start_streaming(tmp_path / "run", "--max_steps", str(checkpoint_steps(tmp_path / "run")[-1] + 12))
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumed_from_step"] is not None


def refused_stream(monkeypatch, config: Config, have: int) -> str:
    """The one line a streamed run of `config` is refused with when `have` bytes are free; fails if it
    got as far as the channel statistics (reading images)."""
    monkeypatch.setattr(memory, "host_available", lambda: have)

    def reached(*args, **kwargs):
        raise AssertionError("the run started reading images")

    monkeypatch.setattr(inputs, "stream_data", reached)
    with pytest.raises(InputError) as refused:
        train_and_evaluate(config, config.workdir)
    return str(refused.value)


def named(line: str, flag: str) -> int:
    return int(line.split(f"{flag} ")[1].split()[0].rstrip(","))


@pytest.mark.parametrize("way", ["stream", "auto"])
def test_a_huge_image_size_is_refused_before_the_statistics_naming_an_image_size_that_fits(monkeypatch, tmp_path,
                                                                                            way):
    config = BASE.replace(num_devices=1, image_size=5000, input=way, workdir=str(tmp_path / "run"))
    line = refused_stream(monkeypatch, config, 8 << 30)
    assert "training 1 model(s) on 5000x5000x3 images in batches of 32, streamed" in line and "of memory and 8.0 GiB is available" in line
    size = named(line, "--image_size")
    splits = stream_splits(config.replace(image_size=size).data_plan)
    inputs.check_stream_fits(config.replace(image_size=size), splits[0], select_devices(1))  # it fits
    with pytest.raises(InputError):
        larger = config.replace(image_size=size + 1)
        inputs.check_stream_fits(larger, stream_splits(larger.data_plan)[0], select_devices(1))


@pytest.mark.parametrize("flag, given, fitting", [("batch_size", 64, 32), ("eval_batch_size", 512, 128)])
def test_a_batch_or_an_eval_batch_that_cannot_fit_is_refused_naming_the_size_that_fits(monkeypatch, tmp_path, flag,
                                                                                      given, fitting):
    config = BASE.replace(num_devices=2, image_size=256, batch_size=8, eval_batch_size=8, input="stream",
                          workdir=str(tmp_path / "run"))
    devices = select_devices(2)
    train = stream_splits(config.data_plan)[0]
    have = max(inputs.stream_bytes(config.replace(**{flag: fitting}), train.image_shape, 10, devices, len(train))[1:])
    line = refused_stream(monkeypatch, config.replace(**{flag: given}), have)
    largest = named(line, f"--{flag}")
    assert fitting <= largest < given
    inputs.check_stream_fits(config.replace(**{flag: largest}), train, devices)
    with pytest.raises(InputError):
        inputs.check_stream_fits(config.replace(**{flag: largest + 2}), train, devices)


def test_the_memory_check_counts_each_data_worker(monkeypatch, tmp_path):
    config = BASE.replace(num_devices=1, input="stream", data_workers=2, workdir=str(tmp_path / "run"))
    train = stream_splits(config.data_plan)[0]
    without = max(inputs.stream_bytes(config.replace(data_workers=0), train.image_shape, 10, select_devices(1),
                                      len(train))[1:])
    line = refused_stream(monkeypatch, config, without + memory.WORKER_BYTES)  # room for 1 of 2 readers' 2 workers
    assert "2 --data_workers" in line and named(line, "--data_workers") == 0


def first_workers(process: subprocess.Popen, deadline: float = 120) -> None:
    """Waits until the run has started its first data worker process."""
    end = time.time() + deadline
    while not workers_of(process.pid):
        assert process.poll() is None and time.time() < end
        time.sleep(0.02)


@pytest.mark.slow
# Each signal at both phases; the moments are shared out between them (each run is a fresh process).
@pytest.mark.parametrize("signum, code, moments", [
    (signal.SIGTERM, 143, [("start", 0.0), ("epoch", 0.0), ("epoch", 0.5)]),
    (signal.SIGINT, 130, [("start", 0.05), ("epoch", 0.2)])])
def test_a_signal_to_the_group_at_any_moment_of_a_streamed_run_ends_it_as_that_signal(tmp_path, signum, code,
                                                                                       moments):
    """Signals while the training workers start (at once), while they train, and while the evaluation's
    workers start and read (after an epoch, its evaluation with 10 batches): each ends the run as
    the signal, saved where training had begun, never as a dead worker, never hanging, and no worker
    outlives it. The signal goes to the whole process group, as a terminal's Ctrl-C does."""
    for moment, delay in moments:
        workdir = tmp_path / f"{moment}-{delay}"
        process = start_streaming(workdir, "--eval_batch_size", "10", "--max_steps", "60")
        if moment == "start":
            first_workers(process)
        else:
            wait_for_workers(process, workdir)
        time.sleep(delay)
        workers = workers_of(process.pid)
        os.killpg(process.pid, signum)
        _, err = process.communicate(timeout=60)
        name = signal.Signals(signum).name
        assert process.returncode == code, (moment, delay, err[-2000:])
        assert f"stopped by {name}" in err and "data worker" not in err and "Traceback" not in err, err[-2000:]
        assert moment == "start" or checkpoint_steps(workdir)
        assert not workers_of(process.pid) and not any(Path(f"/proc/{w}").exists() for w in workers)
