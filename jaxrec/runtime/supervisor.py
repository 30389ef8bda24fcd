"""Whether this process joins others (`wanted`); if so, the command runs in a child watched by a thin parent without
a JAX backend (importing JAX would slow its launch), so that losing a peer ends it with one line, not a crash:
docs/multi_host.md, "Stopping, preemption and lost processes"."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Mapping

from jaxrec.config import Config

# Launchers that start several copies of a command, and the variable that counts them.
LAUNCHER_TASKS = {"srun": "SLURM_STEP_NUM_TASKS", "mpirun": "OMPI_COMM_WORLD_SIZE"}
LOST = 1  # exit code of a process that lost a peer
# How a process says that a collective failed because a peer is gone; its supervisor makes it the user's one line.
LOST_MARK = "jaxrec: lost contact with the run's other processes: "
LIFELINE = "JAXREC_LIFELINE_FD"  # in the child: the read end of a pipe the parent holds open
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGABRT, signal.SIGUSR1,
             signal.SIGUSR2)
# XLA's and absl's C++ log lines ("E1206 08:31:33.437402 6551 file.cc:1549] ..."), held until the run goes on.
RUNTIME_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
# jaxrec's own log lines (jaxrec.cli.commands.setup_logging) and progress bars.
GOING_ON = re.compile(r"^\d\d:\d\d:\d\d |.*\r$", re.DOTALL)
# The first line of a process being ended by the runtime: everything after it is the crash's.
CRASH = re.compile(rf"^(F\d{{4}} |terminate called after throwing|\*\*\* |Fatal Python error|{re.escape(LOST_MARK)})")
# What the runtime and gloo say when a peer is gone, in JAX 0.10 to 0.12.
PEER_LOST = ("stopped sending heartbeats", "JAX distributed service detected fatal errors", "gloo::",
             "Connection reset by peer", "Connection closed by peer", "Socket closed", LOST_MARK)
HEARTBEATS = re.compile(r"stopped sending heartbeats\):\s*((?:\d+\s*)+)")


def wanted(config: Config, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process should join others (see Config.distributed)."""
    if config.distributed != "auto":
        return config.distributed == "on"
    if config.coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return any(_count(environ.get(variable)) > 1 for variable in LAUNCHER_TASKS.values())


def _count(value: str | None) -> int:
    try:
        return int(value or 1)
    except ValueError:
        return 1


def needed(config: Config, environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether this command should run under a supervisor: it joins other processes and is not the child already."""
    return LIFELINE not in environ and wanted(config, environ)


def run_supervised(config: Config) -> int:
    """Reruns this command line as a child and relays it; returns its exit code, or ends by the signal that ended it."""
    read_end, write_end = os.pipe()
    # A session of its own: a terminal's Ctrl-C reaches the child once, forwarded by us, not twice.
    child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]], stderr=subprocess.PIPE, pass_fds=(read_end,),
                             env={**os.environ, LIFELINE: str(read_end)}, start_new_session=True)
    os.close(read_end)  # the child's copy is the one that matters; write_end stays open until this process ends
    forwarded: list[int] = []

    def forward(signum, frame):
        forwarded.append(signum)
        child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    held = relay(child.stderr)
    code = child.wait()
    text = "".join(held)
    if code < 0 and -code in forwarded:  # the child was ended by a signal sent to us: end the same way
        sys.stderr.write(text)
        sys.stderr.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    if code != 0 and any(mark in text for mark in PEER_LOST):
        sys.stderr.write(lost_peer_line(config, text, keep_report(config, text)) + "\n")
        return LOST
    sys.stderr.write(text)  # a crash of another kind is a bug: its whole report stays
    return 128 - code if code < 0 else code


def relay(stream) -> list[str]:
    """Copies the child's stderr to ours piece by piece (`pieces`); returns what it kept back at the end. From a
    runtime log line on (its message may span lines), pieces are kept back until one of jaxrec's own log lines or
    a progress bar shows the run went on, and are then written out; from a crash line on, all are kept back."""
    held: list[str] = []
    crashed = False
    for piece in pieces(stream):
        crashed = crashed or bool(CRASH.match(piece))
        if crashed or ((held or RUNTIME_LOG.match(piece)) and not GOING_ON.match(piece)):
            held.append(piece)
        else:
            sys.stderr.write("".join(held) + piece)
            sys.stderr.flush()
            held.clear()
    return held


def pieces(stream) -> Iterator[str]:
    """The stream's text, split after each newline and carriage return."""
    pending = ""
    while chunk := os.read(stream.fileno(), 1 << 16):
        pending += chunk.decode(errors="replace")
        parts = re.split(r"(?<=[\n\r])", pending)
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending


def keep_report(config: Config, text: str) -> Path | None:
    """A temporary file holding `text`, which a bug report needs and the one line leaves out; None if unwritable."""
    try:
        handle, path = tempfile.mkstemp(prefix=f"jaxrec-process-{config.process_id}-", suffix=".log")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        return Path(path)
    except OSError:
        return None


def lost_peer_line(config: Config, text: str, report: Path | None = None) -> str:
    """The one line a process prints when another of its run is gone, from what the child printed as it ended."""
    me = "this process" if config.process_id is None else f"process {config.process_id}"
    silent = HEARTBEATS.search(text)
    if silent:
        ids = silent.group(1).split()
        lost = (f"process {ids[0]} (its heartbeats stopped" if len(ids) == 1 else
                f"processes {', '.join(ids)} (their heartbeats stopped")
    elif "Socket closed" in text and "CoordinationService" in text:
        lost = "process 0, which hosts the run's coordinator (its connection closed"
    else:
        other = ({0, 1} - {config.process_id}) if config.num_processes == 2 else set()
        lost = f"{f'process {other.pop()}' if other else 'another process'} (a collective's connection broke"
    kept = f" (the runtime's report: {report})" if report else ""
    return (f"error: {me} lost contact with {lost}: a process died or its host went away) and stopped{kept}. "
            "Rerun every process with the same command to resume from the last checkpoint.")


def watch_lifeline(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """In the supervised child: ends this process at once, silently, when the parent is gone (killed
    with SIGKILL, which it cannot forward). Does nothing elsewhere, or when already watching."""
    fd = environ.get(LIFELINE)
    if fd is None or any(t.name == "jaxrec-lifeline" for t in threading.enumerate()):
        return

    def watch() -> None:
        while os.read(int(fd), 1):  # the parent never writes: this returns b"" when its end closes
            pass
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, name="jaxrec-lifeline", daemon=True).start()
