"""Stopping a run cleanly on SIGTERM/SIGINT (preemption, a Colab disconnect, Ctrl-C).

The handler only records the request; the training loop checks it between device calls (and after
an epoch's evaluation), saves a checkpoint (on disk before it goes on) and raises `TrainingInterrupted`. A second
signal of the same kind gets the previous handler back: a second Ctrl-C stops at once (in the
command line, through `exit_on_signals`, which also covers everything outside the training loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
from typing import Iterator

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclasses.dataclass
class StopRequest:
    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "none"


class TrainingInterrupted(Exception):
    """The run stopped on a signal after saving a checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by signal N"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGTERM/SIGINT set the returned request instead of ending the process.

    Outside the main thread (where Python cannot install handlers) the request simply never fires.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {}

    def handler(signum, frame):
        request.signum = signum
        signal.signal(signum, previous[signum])
        log.warning("received %s: finishing the current device call, saving a checkpoint, then stopping "
                    "(send it again to stop at once, without saving)", signal.Signals(signum).name)

    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """For a command-line process only: within the block, SIGTERM/SIGINT end the process at once
    with exit code 128 + the signal and one line, wherever it is (loading data, compiling, writing
    outputs), so a Ctrl-C is never swallowed by a library and never prints a traceback. While the
    training loop trains, its `stop_on_signals` takes over (it saves a checkpoint first). Not for
    notebooks: the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        os.write(2, f"\nstopped by {signal.Signals(signum).name} outside a training step (loading, compiling or "
                    f"writing outputs); the checkpoints are as they were. Run the same command again to continue."
                    f"\n".encode())
        os._exit(128 + signum)

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
