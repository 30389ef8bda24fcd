"""Where a run's metrics go as it trains: metrics.jsonl always, TensorBoard event files with --tensorboard.

Every writer takes the training metrics of each device call (`write_train`) and each finished
epoch's record (`write_epoch`). Only process 0 writes. A resumed run rewrites metrics.jsonl with the
epochs its checkpoint holds, and TensorBoard drops the events a killed session wrote past that
checkpoint (tensorboardX's purge_step), so neither shows an epoch or a step twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from jaxrec.run import outputs
from jaxrec.errors import InputError
from jaxrec.training.run_state import Record

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter(Protocol):
    """What the training loop writes metrics to."""

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        """The mean training loss and accuracy of the device call that ended at `step`."""

    def write_epoch(self, record: Record) -> None:
        """A finished epoch (with its evaluation, if it had one)."""

    def close(self) -> None:
        """Flushes what is buffered."""


class JsonlWriter:
    """metrics.jsonl: one line per finished epoch (jaxrec.training.run_state.Record.to_json)."""

    def __init__(self, workdir: Path, records: Sequence[Record]):
        self.path = Path(workdir) / METRICS_FILE
        outputs.write_jsonl(self.path, [r.to_json() for r in records])  # a lost epoch's line goes

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        pass  # the file holds epochs

    def write_epoch(self, record: Record) -> None:
        outputs.append_jsonl(self.path, record.to_json())

    def close(self) -> None:
        pass


class TensorBoardWriter:
    """Event files under WORKDIR/tensorboard, written with tensorboardX (no TensorFlow): train/loss and
    train/accuracy per device call, test/loss, test/accuracy and test/macro_f1 per evaluation."""

    def __init__(self, workdir: Path, resumed_step: int | None):
        try:
            from tensorboardX import SummaryWriter  # noqa: PLC0415 - only runs with --tensorboard need it
        except ImportError:
            raise InputError("--tensorboard needs tensorboardX, which is not installed; pip install "
                             "'jaxrec[tensorboard]' (or drop --tensorboard)") from None
        purge = None if resumed_step is None else resumed_step + 1
        self._writer = SummaryWriter(logdir=str(Path(workdir) / TENSORBOARD_DIR), purge_step=purge)

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        self._writer.add_scalar("train/loss", loss, step)
        self._writer.add_scalar("train/accuracy", accuracy, step)

    def write_epoch(self, record: Record) -> None:
        if record.evaluated:
            self._writer.add_scalar("test/loss", record.test_loss, record.step)
            self._writer.add_scalar("test/accuracy", record.test_accuracy, record.step)
            self._writer.add_scalar("test/macro_f1", record.test_macro_f1, record.step)
        self._writer.add_scalar("train/images_per_second", record.images_per_second, record.step)

    def close(self) -> None:
        self._writer.close()


class Writers:
    """Several writers as one (none at all on processes other than 0)."""

    def __init__(self, writers: Sequence[MetricWriter] = ()):
        self.writers = tuple(writers)

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        for writer in self.writers:
            writer.write_train(step, loss, accuracy)

    def write_epoch(self, record: Record) -> None:
        for writer in self.writers:
            writer.write_epoch(record)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def open_writers(workdir: Path, records: Sequence[Record], resumed_step: int | None, tensorboard: bool,
                 primary: bool = True) -> Writers:
    """A run's writers: metrics.jsonl (rewritten with `records`, the epochs the run resumes with),
    and TensorBoard's if asked; none where `primary` is false (every process but 0)."""
    if not primary:
        return Writers()
    jsonl = JsonlWriter(workdir, records)
    return Writers([jsonl, TensorBoardWriter(workdir, resumed_step)] if tensorboard else [jsonl])


__all__ = ["JsonlWriter", "METRICS_FILE", "MetricWriter", "TENSORBOARD_DIR", "TensorBoardWriter", "Writers",
           "open_writers"]
