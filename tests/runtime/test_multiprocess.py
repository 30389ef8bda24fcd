"""Multi-process runs (jax.distributed over localhost, CPU collectives through gloo): the same training
as one process with the same devices, evaluation counted once, checkpoints that move between process
layouts, a signal to one process stopping all, and a killed process not leaving the others hanging."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Callable

import chex
import numpy as np
import pytest

from helpers import ROOT, SMALL_FLAGS, checkpoint_steps, records, script_command, write_recipe
from jaxrec.data.sources import SAMPLE_ROOT
from jaxrec.run.checkpoints import checkpoint_dir, load_trained

pytestmark = pytest.mark.slow
COMMON = ["train", "--dataset", "cifar10_sample", "--batch_size", "32", "--progress", "false", "--steps_per_call",
          "1", *SMALL_FLAGS]
# One process's view of the 4 devices after a few steps differs from 2 x 2's only by the order gloo
# sums the 4 gradients in, and by how YNNPACK splits each matmul over the threads a process has.
TOLERANCE = dict(atol=1e-4, rtol=0)  # a wrong gradient average would be off by far more
# A launch that takes longer has hung: each one here ends in well under a minute.
HUNG_AFTER_SECONDS = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def env_with_devices(devices: int) -> dict[str, str]:
    # LLVM's optimisation passes stay on, as in a user's run (conftest turns them off elsewhere): without them,
    # jaxlib 0.12's 2 x 2 drifts 1e-3 from 1 x 4 in 24 steps (3e-8 with them; docs/development.md).
    kept = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
            if "device_count" not in flag and "backend_optimization_level" not in flag]
    env = dict(os.environ, XLA_FLAGS=" ".join([f"--xla_force_host_platform_device_count={devices}", *kept]))
    env["PYTHONFAULTHANDLER"] = "1"  # a process aborted as hung prints where it was
    return env


def start(command: list[str], processes: int, devices: int, join: Callable[[int, int], list[str]] | None = None,
          env: dict[str, str] | None = None, cwds: list[Path] | None = None) -> list[subprocess.Popen]:
    """`processes` copies of `command`, each with `devices` CPU devices, joined over localhost by the
    arguments join(port, i) (default: jaxrec's flags), process i in cwds[i] if given."""
    port = free_port()
    join = join or (lambda port, i: ["--coordinator_address", f"localhost:{port}", "--num_processes",
                                     str(processes), "--process_id", str(i)])
    procs = []
    for i in range(processes):  # output to files, not pipes: a full pipe would block a process
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        procs.append(subprocess.Popen(command + (join(port, i) if processes > 1 else []),
                                      env=env or env_with_devices(devices), stdout=out, stderr=err, text=True,
                                      cwd=cwds[i] if cwds else None))
        procs[-1].files = (out, err)
    return procs


def output(proc: subprocess.Popen) -> tuple[str, str]:
    """An ended process's stdout and stderr."""
    texts = []
    for file in proc.files:
        file.seek(0)
        texts.append(file.read())
        file.close()
    return texts[0], texts[1]


class Hung(Exception):
    """The processes of one launch did not end in time; they were aborted."""


def finish(procs: list[subprocess.Popen], timeout: float = HUNG_AFTER_SECONDS) -> list[tuple[int, str, str]]:
    """Each process's exit code, stderr and stdout, once they have all ended. Past `timeout`
    seconds every process still running is aborted (SIGABRT: Python's faulthandler prints its
    stack) and Hung is raised with their stderr: a test never leaves processes behind."""
    deadline = time.time() + timeout
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.2)
    hung = [p.poll() is None for p in procs]
    for p, still in zip(procs, hung):
        if still:
            p.send_signal(signal.SIGABRT)
    for p in procs:
        p.wait(timeout=60)
    outs = [output(p) for p in procs]
    if any(hung):
        raise Hung("\n".join(f"process {i} ({'hung' if h else 'ended'}): ...{err[-3000:]}"
                              for i, (h, (_, err)) in enumerate(zip(hung, outs))))
    return [(p.returncode, err, out) for p, (out, err) in zip(procs, outs)]


def launch(make: Callable[[], list[subprocess.Popen]]) -> list[tuple[int, str, str]]:
    """finish(make()), once more if the processes hang. XLA:CPU's collectives could starve each other
    of worker threads under core contention (docs/troubleshooting.md; fixed in jaxrec on 2026-11-26,
    the retry kept as a guard). A hang that comes from jaxrec (processes taking different paths)
    hangs again, and fails."""
    try:
        return finish(make())
    except Hung as hung:
        warnings.warn(f"a multi-process launch hung and was aborted; trying once more. Their stderr:\n{hung}")
        return finish(make())


def wait_for_first_epoch(workdir: Path, procs: list[subprocess.Popen]) -> None:
    """Returns once metrics.jsonl holds a whole line (the first epoch is done)."""
    deadline = time.time() + 180
    while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text().endswith("\n"):
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)


def train(workdir: Path, epochs: int, processes: int, devices: int, *extra: str) -> list[tuple[int, str]]:
    command = script_command("jaxrec", *COMMON, "--workdir", str(workdir), "--epochs", str(epochs), *extra)
    ended = launch(lambda: start(command, processes, devices))  # a rerun after a hang resumes: the same result
    assert all(code == 0 for code, _, _ in ended), [err[-2000:] for _, err, _ in ended]
    return ended


def assert_same_training(a: Path, b: Path) -> None:
    chex.assert_trees_all_close(load_trained(a).params, load_trained(b).params, **TOLERANCE)
    ra, rb = records(a), records(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    np.testing.assert_allclose([r["train_loss"] for r in ra], [r["train_loss"] for r in rb], rtol=1e-5)
    ea, eb = (json.loads((w / "eval.json").read_text()) for w in (a, b))
    assert ea["confusion"] == eb["confusion"] and ea["count"] == eb["count"] == 100


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: 1 process x 4 devices, 2 epochs."""
    workdir = tmp_path_factory.mktemp("one_process")
    train(workdir, 2, 1, 4, "--save_predictions", "true")
    return workdir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The same run as 2 processes x 2 devices, and their (exit code, stderr, stdout)."""
    workdir = tmp_path_factory.mktemp("two_processes")
    return workdir, train(workdir, 2, 2, 2, "--save_predictions", "true")


@pytest.mark.across_versions
def test_two_processes_of_two_devices_train_as_one_process_of_four(one_process, two_processes):
    tmp_path, ended = two_processes
    assert_same_training(tmp_path, one_process)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["processes"], summary["num_devices"]) == (2, 4)
    # Every process evaluates its share; the predictions of all 100 examples come back in order.
    mine, ref = (np.load(w / "test_predictions.npz") for w in (tmp_path, one_process))
    np.testing.assert_allclose(mine["probabilities"], ref["probabilities"], atol=1e-5)
    # Outputs are written once (by process 0); every process logs with its index.
    assert len(records(tmp_path)) == 2
    assert all(f"process {i}/2 " in err for i, (_, err, _) in enumerate(ended))


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    """1 process x 2 devices and 2 processes x 1 device, streaming, augmenting, with BatchNorm, 2 epochs:
    the runs of both tests below (a launch of 2 processes costs ~13 s of start-up and compiling;
    sharing them saves the two launches the BatchNorm test had of its own). The first test's comparison
    holds with BatchNorm as without; with it, it also needs the statistics of the global batch."""
    workdir = tmp_path_factory.mktemp("streaming")
    flags = ("--input", "stream", "--augment", "--norm", "batch")
    train(workdir / "one", 2, 1, 2, *flags)
    ended = train(workdir / "two", 2, 2, 1, *flags, "--data_workers", "1")
    return workdir / "one", workdir / "two", ended


def test_two_streaming_processes_read_their_own_halves_and_train_as_one_process_of_two_devices(streaming):
    one, two, ended = streaming
    assert_same_training(two, one)
    # Each process reads only its devices' columns of every global batch of 32.
    assert "reads examples 0-15 of each global batch" in ended[0][1]
    assert "reads examples 16-31 of each global batch" in ended[1][1]


def test_batchnorm_statistics_span_the_processes(streaming):
    one, two = (load_trained(workdir, "latest").variables for workdir in streaming[:2])
    assert "batch_stats" in one
    # The one process averages its 2 devices' statistics; per-process ones (16 examples, not 32) would
    # differ at once.
    chex.assert_trees_all_close(two, one, **TOLERANCE)


@pytest.mark.across_versions  # on jaxlib 0.12 without LLVM's passes its 2x2 run drifted from 1x4
@pytest.mark.parametrize("first", ["2x2", "1x4"])
def test_a_checkpoint_resumes_in_another_process_layout(one_process, two_processes, tmp_path, first):
    # A run of one layout as if its processes had died after the first epoch (its later checkpoint
    # gone), resumed in the other layout.
    source, then = (two_processes[0], (1, 4)) if first == "2x2" else (one_process, (2, 2))
    shutil.copytree(source, tmp_path / "run")
    shutil.rmtree(checkpoint_dir(tmp_path / "run") / "24")
    train(tmp_path / "run", 2, *then)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumed_from_step"] == 12
    assert_same_training(tmp_path / "run", one_process)


@pytest.mark.across_versions
def test_a_signal_to_one_process_stops_all_after_the_same_step_and_the_rerun_resumes(tmp_path):
    command = script_command("jaxrec", *COMMON, "--workdir", str(tmp_path / "run"), "--epochs", "8")
    procs = start(command, 2, 2)
    wait_for_first_epoch(tmp_path / "run", procs)
    procs[1].send_signal(signal.SIGTERM)  # after epoch 1, during training
    ended = finish(procs)
    assert [code for code, _, _ in ended] == [128 + signal.SIGTERM] * 2, [err[-2000:] for _, err, _ in ended]
    stops = [err.strip().splitlines()[-1] for _, err, _ in ended]
    assert stops[0] == stops[1] and stops[0].startswith("stopped by SIGTERM at step")
    step = int(stops[0].split("at step ")[1].split()[0])
    assert checkpoint_steps(tmp_path / "run")[-1] == step and 0 < step < 96
    # A dozen steps past the stop show the resume; --max_steps may change on resume.
    train(tmp_path / "run", 8, 2, 2, "--max_steps", str(step + 12))
    train(tmp_path / "straight", 8, 2, 2, "--max_steps", str(step + 12))
    assert records(tmp_path / "run") == records(tmp_path / "straight")  # same layout: bit-identical


@pytest.mark.across_versions
@pytest.mark.parametrize("victim", [1, 0])  # 0 also hosts the coordinator
def test_a_killed_process_ends_the_others_in_one_line_within_the_heartbeat_timeout(tmp_path, victim):
    command = script_command("jaxrec", *COMMON, "--workdir", str(tmp_path), "--epochs", "40",
                             "--heartbeat_timeout", "10")
    procs = start(command, 2, 2)
    wait_for_first_epoch(tmp_path, procs)
    procs[victim].kill()  # SIGKILL: its command's supervisor cannot pass it on, the command must end with it
    killed = time.time()
    (code, err, _), = finish([procs[1 - victim]], timeout=60)
    assert time.time() - killed < 10 + 20
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith(f"error: process {1 - victim} lost contact with process {victim}"), err[-3000:]
    assert last.endswith("Rerun every process with the same command to resume from the last checkpoint.")
    assert not any(mark in err for mark in ("Traceback", "Fatal Python error", "Check failure", "terminate called",
                                            "coordination_service")), err[-3000:]
    deadline = time.time() + 10  # nothing left running: the killed command ends with its supervisor
    while [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path) in _cmdline(p)]:
        assert time.time() < deadline
        time.sleep(0.2)
    assert load_trained(tmp_path, "latest").step >= 12  # the last good checkpoint (epoch 1's at least) stays


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


def test_a_workdir_refused_by_process_0_stops_every_process_at_once(tmp_path):
    (tmp_path / "notes.txt").write_text("not a jaxrec run")
    started = time.time()
    ended = finish(start(script_command("jaxrec", *COMMON, "--workdir", str(tmp_path), "--epochs", "1"), 2, 2))
    assert [code for code, _, _ in ended] == [2, 2], [err[-2000:] for _, err, _ in ended]
    assert "holds files that are not a jaxrec run" in ended[0][1]
    assert "process 0 refused --workdir" in ended[1][1]
    assert time.time() - started < 60  # not the heartbeat timeout (60 s) on top of the start-up
    assert (tmp_path / "notes.txt").read_text() == "not a jaxrec run" and not (tmp_path / "checkpoints").exists()


def test_processes_started_with_different_settings_all_stop_at_once_naming_the_field(tmp_path):
    command = script_command("jaxrec", *COMMON, "--workdir", str(tmp_path), "--epochs", "1")
    port = free_port()
    started = time.time()
    procs = start(command, 2, 2, join=lambda _, i: ["--coordinator_address", f"localhost:{port}", "--num_processes",
                                                   "2", "--process_id", str(i), "--seed", str(i)])
    ended = finish(procs)
    assert [code for code, _, _ in ended] == [2, 2], [err[-2000:] for _, err, _ in ended]
    line = ("the run's processes disagree on their settings: seed is 0 in process 0 and 1 in process 1; start every "
            "process with the same command; only --process_id differs")
    assert all(err.strip().splitlines()[-1] == f"error: {line}" for _, err, _ in ended), ended[0][1][-2000:]
    assert time.time() - started < 60 and not (tmp_path / "checkpoints").exists()


def test_processes_reading_different_data_stop_before_training(tmp_path):
    """The same --dataset naming other files in each process (here: a relative path from two folders;
    on a cluster, two hosts' copies): the data sets' fingerprints disagree."""
    hosts = [tmp_path / "host0", tmp_path / "host1"]
    for host in hosts:
        shutil.copytree(SAMPLE_ROOT, host / "data")
    images = sorted((hosts[1] / "data" / "train").rglob("*.jpg"))
    images[0].write_bytes(images[-1].read_bytes())  # the same layout, other content
    command = script_command("jaxrec", *COMMON, "--workdir", str(tmp_path / "run"), "--epochs", "1")
    command[command.index("cifar10_sample")] = "data"
    ended = finish(start(command, 2, 2, cwds=hosts))
    assert [code for code, _, _ in ended] == [2, 2], [err[-2000:] for _, err, _ in ended]
    assert all("the run's processes disagree on their data set: mean is" in err for _, err, _ in ended)
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))


def test_sigint_while_waiting_to_join_ends_the_process_at_once(tmp_path):
    command = script_command("jaxrec", *COMMON, "--workdir", str(tmp_path), "--coordinator_address",
                             f"localhost:{free_port()}", "--num_processes", "2", "--process_id", "1")
    (proc,) = start(command, 1, 2)
    deadline = time.time() + 60
    while b"joining the run's processes" not in os.pread(proc.files[1].fileno(), 1 << 20, 0):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1)  # inside jax.distributed.initialize, waiting for the coordinator that never comes
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    (code, err, _), = finish([proc], timeout=30)
    assert code == 130 and time.time() - sent < 5
    assert "stopped by SIGINT while process 1 waited for the run's other processes to join" in err


def test_the_same_process_id_twice_ends_both_in_one_line_each(tmp_path):
    """The second cannot listen on the coordinator's port (the first holds it): one line at once. The
    first, alone, waits --join_timeout for a second process and stops in one line."""
    port = free_port()

    def command(name: str) -> list[str]:
        return script_command("jaxrec", *COMMON, "--workdir", str(tmp_path / name), "--coordinator_address",
                              f"localhost:{port}", "--num_processes", "2", "--process_id", "0", "--join_timeout", "8")

    (first,) = start(command("a"), 1, 2)
    deadline = time.time() + 60
    while b"joining the run's processes" not in os.pread(first.files[1].fileno(), 1 << 20, 0):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.2)
    (second,) = start(command("b"), 1, 2)  # the first holds the coordinator's port by now
    started = time.time()
    (code_b, err_b, _), (code_a, err_a, _) = finish([second, first], timeout=60)
    assert (code_a, code_b) == (2, 2) and time.time() - started < 40
    assert f"process 0 cannot listen on port {port}" in err_b.strip().splitlines()[-1]
    assert err_a.strip().splitlines()[-1].startswith("error: process 0 waited 8 s (--join_timeout) for 2 processes")
    assert "--process_id" in err_a and not any("Traceback" in err or "Fatal" in err for err in (err_a, err_b))

EVAL_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from jaxrec.runtime import distributed
    from jaxrec.config import Config
    distributed.start(Config(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2])))
    from helpers import PRE, as_split, small_state
    from jaxrec.evaluation.evaluator import Evaluator
    from jaxrec.core.parallel import replicate, select_devices
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1003, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 1003).astype(np.int32)
    state = small_state()
    devices = select_devices(0)
    evaluator = Evaluator(state.apply_fn, as_split(images, labels), PRE, devices, 96)
    result = evaluator(replicate(state.variables, devices))
    probabilities = evaluator.probabilities(replicate(state.variables, devices))
    print(json.dumps({"confusion": np.asarray(result["confusion"]).tolist(), "loss": float(result["loss"]),
                      "predicted": probabilities.argmax(-1).tolist(), "rows": len(probabilities)}))
""")


def test_evaluation_over_two_processes_counts_every_example_once(tmp_path):
    script = tmp_path / "evaluate_1003.py"
    script.write_text(EVAL_SCRIPT)
    env = {**env_with_devices(2), "PYTHONPATH": str(ROOT / "tests")}
    ended = launch(lambda: start([sys.executable, str(script)], 2, 2, join=lambda port, i: [f"localhost:{port}", str(i)],
                                 env=env))
    assert all(code == 0 for code, _, _ in ended), [err[-2000:] for _, err, _ in ended]
    results = [json.loads(out.strip().splitlines()[-1]) for _, _, out in ended]
    assert results[0] == results[1]
    confusion = np.array(results[0]["confusion"])
    assert confusion.sum() == 1003 and results[0]["rows"] == 1003
    # The same counts as one process over its devices: each example counted once, in its place.
    assert np.array_equal(np.bincount(results[0]["predicted"], minlength=10), confusion.sum(axis=0))


def test_a_seed_study_of_a_recipe_file_with_two_seeds_per_program_runs_over_two_processes(tmp_path):
    # A recipe of one's own (a file outside the package) over processes, as a built-in: every process
    # loads the same file (the settings check compares its path), and the result is the layout's.
    study = ["study", "--model", str(write_recipe(tmp_path)), "--seeds", "0-1", "--seeds_per_program", "2",
             "--dataset", "cifar10_sample", "--batch_size", "32", "--progress", "false", "--epochs", "1"]
    ended = {}
    for layout, extra in (((2, 2), ()), ((1, 4), ("--compare_with", str(tmp_path / "2x2")))):
        workdir = tmp_path / f"{layout[0]}x{layout[1]}"
        outs = launch(lambda: start(script_command("jaxrec", *study, "--workdir", str(workdir), *extra), *layout))
        assert all(code == 0 for code, _, _ in outs), "\n".join(f"process {i}: exit {code}\n{err[-2500:]}" for i, (code, err, _) in enumerate(outs))
        ended[layout] = [out for _, _, out in outs]
    assert "wrote" in ended[(2, 2)][0] and "wrote" not in ended[(2, 2)][1]  # the study's report is printed once
    # Ended with the comparison against the first layout's study: the same seeds, so no difference to find.
    assert f"test_accuracy: A = {tmp_path / '1x4'} (n=2), B = {tmp_path / '2x2'} (n=2)" in ended[(1, 4)][0]
    for seed in (0, 1):
        assert_same_training(tmp_path / "2x2" / f"seed_{seed}", tmp_path / "1x4" / f"seed_{seed}")
    study_json = json.loads((tmp_path / "2x2" / "study.json").read_text())
    assert study_json["seeds"] == [0, 1] and study_json["num_devices"] == [4, 4]
    recorded = json.loads((tmp_path / "2x2" / "seed_1" / "summary.json").read_text())["recipe"]
    assert recorded["path"] == str(tmp_path / "perceptron.py") and len(recorded["sha256"]) == 64
