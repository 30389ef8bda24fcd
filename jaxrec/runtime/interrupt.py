"""Stopping a run cleanly on SIGTERM/SIGINT: the handler only records the request; the training loop saves a
checkpoint and raises `TrainingInterrupted` (docs/checkpoints.md; several processes: docs/multi_host.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import threading
from typing import Callable, Iterator

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class StopRequest:
    signum: int | None = None


class TrainingInterrupted(Exception):
    """The run stopped on a signal after saving a checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for "ended by signal N"


# How long a signal may wait for the main thread, stuck in a device call or a collective, before the
# process ends without saving: longer than any device call or compilation should take.
STUCK_AFTER_SECONDS = 300.0


@contextlib.contextmanager
def stop_on_signals(stuck_after: float = STUCK_AFTER_SECONDS, processes: int = 1) -> Iterator[StopRequest]:
    """Within the block, SIGTERM/SIGINT set the returned request instead of ending the process; a second one, or the
    block still running `stuck_after` s later, ends it with one line. `processes`: the run's (the line blames a
    collective only where there are others). Off the main thread the request never fires."""
    request = StopRequest()
    waited = ("a device call or a collective, which may wait for a process of the run that is gone or stuck"
              if processes > 1 else "a device call, a data worker or a save")

    def again(signum, frame):
        os.write(2, f"\nstopped by {signal.Signals(signum).name}, a second signal, while the run was stopping "
                    f"for the first (finishing its device call or saving); a checkpoint being written is not "
                    f"complete and the run resumes from the last complete one, which the rerun tidies up: run "
                    f"the same command again.\n".encode())
        os._exit(128 + signum)

    def handler(signum, frame):
        request.signum = signum
        signal.signal(signum, again)
        log.warning("received %s: finishing the current device call, saving a checkpoint, then stopping "
                    "(send it again to stop at once, without saving)", signal.Signals(signum).name)

    def on_signal(signum: int, done: threading.Event) -> None:  # the block has not ended `stuck_after` s later
        if not done.wait(stuck_after):
            os.write(2, f"stopped by {signal.Signals(signum).name}: training did not stop within {stuck_after:.0f} s "
                        f"of the signal (what it waited for did not come back: {waited}); exiting without "
                        "saving. Rerun the same command to resume from the last checkpoint.\n".encode())
            os._exit(128 + signum)

    with watch_signals(handler, on_signal):
        yield request


@contextlib.contextmanager
def watch_signals(handler: Callable, on_signal: Callable[[int, threading.Event], None],
                  on_tick: Callable[[threading.Event], None] | None = None) -> Iterator[None]:
    """Within the block (main thread only), `handler` handles SIGTERM/SIGINT and a thread calls on_signal(signum, done)
    at once, even while Python is blocked in C++ (set_wakeup_fd); on_tick(done) runs every ~0.25 s until `done`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    receive, send = socket.socketpair()
    send.setblocking(False)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if select.select([receive], [], [], 0.25)[0]:
                on_signal(receive.recv(1)[0], done)
            elif on_tick is not None:
                on_tick(done)

    watcher = threading.Thread(target=watch, name="jaxrec-signal-watch", daemon=True)
    with _handling(handler), receive, send:
        previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
        watcher.start()
        try:
            yield
        finally:
            done.set()  # a watcher waiting on it returns at once
            watcher.join()
            signal.set_wakeup_fd(previous_fd)


@contextlib.contextmanager
def _handling(handler: Callable) -> Iterator[None]:
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def exit_on_signals(trains: bool = False) -> Iterator[None]:
    """For a command-line process, not a notebook: SIGTERM/SIGINT end it at once with one line and exit 128 + the
    signal (no library swallows a Ctrl-C; no traceback); while the loop trains, its `stop_on_signals` takes over.
    `trains`: the command has a loop, whose checkpoints the line then says are untouched."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    where = (" outside a training step (loading, compiling or writing outputs); the checkpoints are as they were. "
             "Run the same command again to continue." if trains else
             " before the command finished. Run the same command again: it starts over.")

    def handler(signum, frame):
        os.write(2, f"\nstopped by {signal.Signals(signum).name}{where}\n".encode())
        os._exit(128 + signum)

    with _handling(handler):
        yield
