"""What each device call of an epoch is fed (docs/design.md, "One input path")."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxrec.core.parallel import Program, local_devices, put_shares
from jaxrec.data.stream import RowReader, StreamedDataset, StreamError

log = logging.getLogger(__name__)
Plan = Sequence[tuple[int, int]]  # the epoch's device calls: (first position, end position)
WINDOW = 1 << 24  # example indices one reader reads (64 MB of them): the epochs its workers serve


class TrainStream:
    """A streamed run's training batches (this process's columns of each), read ahead across epoch ends: one reader
    and its worker processes serve as many epochs as WINDOW indices hold, so workers start once per window, not per
    epoch. order_of(epoch) gives the loop's [steps, batch] indices of the epoch; steps_in_epoch(epoch) is 0 or less
    past the run's last epoch."""

    def __init__(self, dataset: StreamedDataset, order_of: Callable[[int], np.ndarray],
                 steps_in_epoch: Callable[[int], int], devices: Sequence[jax.Device], batch: int, workers: int):
        self._dataset, self._order_of, self._steps_in_epoch, self._workers = dataset, order_of, steps_in_epoch, workers
        # This process's columns of a global batch: its devices' contiguous slices (select_devices orders by process).
        per_device, mine = batch // len(devices), local_devices(devices)
        first = next(i for i, d in enumerate(devices) if d in mine)
        self._columns = slice(first * per_device, (first + len(mine)) * per_device)
        self._reader: RowReader | None = None
        self._at = self._window_end = (0, 0)
        # No call planned until for_epoch: take and advance read nothing.
        self._epoch, self._plan, self._program = 0, [], None
        self._next_call, self._ready, self._failed = 0, None, None

    def batch(self, epoch: int, position: int) -> dict[str, np.ndarray]:
        """The batch of step `position` of `epoch`: the reader's next one when the loop goes in order
        (it always does, but for a resume), else read by a reader opened there."""
        if self._reader is None or self._at != (epoch, position) or self._at >= self._window_end:
            self._open(epoch, position)
        batch = next(self._reader)
        position += 1
        self._at = (epoch + 1, 0) if position == self._steps_in_epoch(epoch) else (epoch, position)
        return batch

    def _open(self, epoch: int, position: int) -> None:
        self.close()
        rows, last, size, width = [], epoch, 0, self._columns.stop - self._columns.start
        while self._steps_in_epoch(last) > 0 and (not rows or size + self._steps_in_epoch(last) * width <= WINDOW):
            first = position if last == epoch else 0
            rows.append(self._order_of(last)[first:self._steps_in_epoch(last), self._columns])
            size += rows[-1].size
            last += 1
        self._reader = RowReader(self._dataset.reader, np.concatenate(rows), self._workers)
        log.info("streaming epochs %d-%d from step %d: this process reads examples %d-%d of each global batch, "
                 "%s", epoch + 1, last, position, self._columns.start, self._columns.stop - 1,
                 f"{self._workers} worker processes decoding" if self._workers else "decoded in threads")
        self._at, self._window_end = (epoch, position), (last, 0)

    def for_epoch(self, epoch: int, plan: Plan, program: Program) -> TrainStream:
        """This stream as the feed of epoch `epoch`'s device calls `plan`: each call's batches [local devices,
        steps, per_device, ...], read in plan order."""
        self._epoch, self._plan, self._program = epoch, list(plan), program
        self._next_call, self._ready, self._failed = 0, None, None
        self.advance()
        return self

    def _read(self, start: int, end: int) -> tuple[Any, Any]:
        batches = [self.batch(self._epoch, position) for position in range(start, end)]
        images = self._program.batch_shares(np.stack([b["image"] for b in batches]))
        labels = self._program.batch_shares(np.stack([b["label"] for b in batches]))
        return put_shares((images, labels), self._program.devices)  # asynchronous: the copy overlaps the call

    def take(self) -> tuple[Any, Any]:
        """The next call's batches; raises the StreamError that reading them met."""
        if self._failed is not None:
            raise self._failed
        ready, self._ready = self._ready, None
        return ready

    def advance(self) -> None:
        """Reads the next call's batches. A failure waits for `take`: the call in flight has taken the state, and
        the loop must get it back (to save it) before it stops."""
        if self._ready is None and self._failed is None and self._next_call < len(self._plan):
            try:
                self._ready = self._read(*self._plan[self._next_call])
            except StreamError as err:
                self._failed = err
            self._next_call += 1

    def close(self) -> None:
        """Ends the reading; its worker processes stop."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class DeviceFeed:
    """The on-device path: the training split, put on the devices once; every call gathers from it."""

    def __init__(self, images: jax.Array, labels: jax.Array):
        self._inputs = (images, labels)

    def for_epoch(self, epoch: int, plan: Plan, program: Program) -> DeviceFeed:
        """The feed of any epoch's calls: the same split."""
        return self

    def take(self) -> tuple[Any, Any]:
        """The next call's (images, labels) argument."""
        return self._inputs

    def advance(self) -> None:
        """Prepares the call after the one just dispatched (nothing to prepare here)."""

    def close(self) -> None:
        """Nothing reads: the split stays on the devices for the run."""
