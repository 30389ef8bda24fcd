"""Stopping a run cleanly on SIGTERM/SIGINT (preemption, a Colab disconnect, Ctrl-C).

The handler only records the request; the training loop checks it between device calls (and after
an epoch's evaluation), saves a checkpoint, waits for it and raises `TrainingInterrupted`. A second signal of the same kind gets
the default behaviour back (a second Ctrl-C stops at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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
