"""Signals outside the training loop (loading data, compiling, writing outputs) end a command-line
run at once with 128 + the signal and one line; inside it, the loop saves first (test_checkpoint)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, script_command
from jaxrec.run.workdir import LOCK_FILE
from jaxrec.runtime.interrupt import stop_on_signals


@pytest.mark.slow  # a fresh process each, started and signalled
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_loading_data_exits_at_once_without_a_traceback(tmp_path, signum, code):
    data = tmp_path / "data"
    png = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png)
    for name in ("ann", "bob"):  # 6,000 images: decoding them takes a few seconds
        (data / name).mkdir(parents=True)
        for i in range(3000):
            (data / name / f"{i}.png").write_bytes(png.read_bytes())
    run = subprocess.Popen(script_command("jaxrec", "train", "--dataset", data, "--workdir", tmp_path / "run",
                                          "--progress", "false"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ((tmp_path / "run" / LOCK_FILE).exists() and
                   (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(run.pid)):
            assert time.time() < deadline and run.poll() is None, run.stderr.read() if run.poll() else "no lock"
            time.sleep(0.1)
        time.sleep(0.3)  # past the workdir checks, into the images
        sent = time.time()
        run.send_signal(signum)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == code and time.time() - sent < 5
    assert "Traceback" not in err and f"stopped by {signal.Signals(signum).name} outside a training step" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


STUCK_SCRIPT = """
import sys, time
import jax, jax.numpy as jnp
from jaxrec.runtime.interrupt import stop_on_signals
endless = jax.jit(lambda x: jax.lax.fori_loop(0, 2**30, lambda i, v: v * 0.5 + 1.0, x))
with stop_on_signals(stuck_after=2) as stop:
    print("computing", flush=True)
    jax.block_until_ready(endless(jnp.ones(4096)))  # the main thread never comes back: like a lost collective
print("came back", flush=True)
"""


@pytest.mark.slow
def test_a_signal_is_never_ignored_while_the_device_does_not_come_back(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_SCRIPT)
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "computing"
        time.sleep(1)
        sent = time.time()
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 143 and 2 <= time.time() - sent < 15
    assert "stopped by SIGTERM: training did not stop within 2 s of the signal" in err
    assert "came back" not in out


def test_a_signal_the_loop_acts_on_in_time_only_sets_the_request():
    with stop_on_signals(stuck_after=1.5) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the block ends within stuck_after: the watch must not end the process
    time.sleep(1.5)
    assert stop.signum == signal.SIGTERM


WATCHED_SCRIPT = """
import sys, time
from jaxrec.runtime.interrupt import exit_on_signals, stop_on_signals
with exit_on_signals(trains=True), stop_on_signals(stuck_after=float(sys.argv[1]), processes=int(sys.argv[2])):
    print("waiting", flush=True)
    time.sleep(30)  # a save, or a call that does not come back
print("came back", flush=True)
"""


def watched(tmp_path, stuck_after: float, processes: int, signals: list[int],
            text: str = WATCHED_SCRIPT) -> tuple[int, str]:
    """Runs WATCHED_SCRIPT (or `text`), sends `signals` half a second apart once it waits; its exit code and stderr."""
    script = tmp_path / "watched.py"
    script.write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, str(script), str(stuck_after), str(processes)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert run.stdout.readline().strip() == "waiting"
        for signum in signals:
            run.send_signal(signum)
            time.sleep(0.5)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    return run.returncode, err


@pytest.mark.parametrize("processes, blamed", [(1, "a device call, a data worker or a save"),
                                               (2, "a collective, which may wait for a process of the run")])
def test_the_stuck_watch_blames_a_collective_only_in_a_run_of_several_processes(tmp_path, processes, blamed):
    code, err = watched(tmp_path, 1, processes, [signal.SIGTERM])
    assert code == 143 and blamed in err
    assert processes > 1 or "collective" not in err


def test_a_second_ctrl_c_while_stopping_says_so_not_outside_a_training_step(tmp_path):
    code, err = watched(tmp_path, 20, 1, [signal.SIGINT, signal.SIGINT])
    assert code == 130 and "Traceback" not in err
    assert "stopped by SIGINT, a second signal, while the run was stopping" in err and "outside" not in err


def test_a_signal_to_a_command_without_training_says_so_not_that_checkpoints_are_kept(tmp_path):
    text = ("import time\nfrom jaxrec.runtime.interrupt import exit_on_signals\nwith exit_on_signals():\n"
            "    print('waiting', flush=True)\n    time.sleep(30)\n")
    code, err = watched(tmp_path, 20, 1, [signal.SIGINT], text)
    assert code == 130 and err.strip() == ("stopped by SIGINT before the command finished. Run the same command "
                                           "again: it starts over.")
