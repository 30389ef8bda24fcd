"""Where a run's metrics go as it trains: metrics.jsonl always, TensorBoard event files with --tensorboard.

Only process 0 writes, and writers are flushed before every checkpoint, so a checkpoint never covers a step its
writers lost. A resumed run rewrites metrics.jsonl with its checkpoint's epochs; TensorBoard drops every event
from the checkpoint's step on (purge_step) and writes that step's again. So neither shows a step twice or misses
one the checkpoint covers, even after a SIGKILL or a session ended inside an epoch.
"""

from __future__ import annotations

from pathlib import Path

from jaxrec.config.settings import TENSORBOARDX_MISSING
from jaxrec.core.run_state import Record, RunState
from jaxrec.errors import InputError
from jaxrec.run import outputs

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class TensorBoardWriter:
    """Event files under WORKDIR/tensorboard, written with tensorboardX (no TensorFlow): train/loss and
    train/accuracy per device call, test/loss, test/accuracy and test/macro_f1 per evaluation."""

    def __init__(self, workdir: Path, resumed: RunState | None):
        """resumed: where the checkpoint the run resumes from stands (None: a fresh start, which drops
        whatever a session killed before its first checkpoint wrote)."""
        try:
            from tensorboardX import SummaryWriter  # noqa: PLC0415 - only runs with --tensorboard need it
        except ImportError:
            raise InputError(TENSORBOARDX_MISSING) from None
        kept = resumed is not None and resumed.call_loss is not None  # a checkpoint that holds its step's metrics
        purge = 0 if resumed is None else resumed.step if kept else resumed.step + 1
        self._writer = SummaryWriter(logdir=str(Path(workdir) / TENSORBOARD_DIR), purge_step=purge)
        if kept:
            self.write_train(resumed.step, resumed.call_loss, resumed.call_accuracy)
            if resumed.records and resumed.records[-1].step == resumed.step:  # the checkpoint ended an epoch
                self.write_epoch(resumed.records[-1])

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        self._writer.add_scalar("train/loss", loss, step)
        self._writer.add_scalar("train/accuracy", accuracy, step)

    def write_epoch(self, record: Record) -> None:
        if record.evaluated:
            self._writer.add_scalar("test/loss", record.test_loss, record.step)
            self._writer.add_scalar("test/accuracy", record.test_accuracy, record.step)
            self._writer.add_scalar("test/macro_f1", record.test_macro_f1, record.step)
        self._writer.add_scalar("train/images_per_second", record.images_per_second, record.step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Writers:
    """A run's metric writers (none at all on processes other than 0): metrics.jsonl, one line per finished epoch
    (jaxrec.core.run_state.Record.to_json), and TensorBoard's if the run has one."""

    def __init__(self, jsonl: Path | None = None, tensorboard: TensorBoardWriter | None = None):
        self.jsonl = jsonl
        self.tensorboard = tensorboard

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        """The mean training loss and accuracy of the device call that ended at `step` (metrics.jsonl holds epochs)."""
        if self.tensorboard is not None:
            self.tensorboard.write_train(step, loss, accuracy)

    def write_epoch(self, record: Record) -> None:
        """A finished epoch (with its evaluation, if it had one)."""
        if self.jsonl is not None:
            outputs.append_jsonl(self.jsonl, record.to_json())
        if self.tensorboard is not None:
            self.tensorboard.write_epoch(record)

    def flush(self) -> None:
        """Puts what was written on disk (called before every checkpoint; JSONL lines are written as they come)."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        """Flushes what is buffered."""
        if self.tensorboard is not None:
            self.tensorboard.close()


def open_writers(workdir: Path, run: RunState, resumed: bool, tensorboard: bool, primary: bool = True) -> Writers:
    """A run's writers: metrics.jsonl (rewritten with run.records) and, if asked, TensorBoard's (`resumed`: `run` is
    a checkpoint's); none unless `primary` (process 0)."""
    if not primary:
        return Writers()
    jsonl = Path(workdir) / METRICS_FILE
    outputs.write_jsonl(jsonl, [r.to_json() for r in run.records])  # a lost epoch's line goes
    return Writers(jsonl, TensorBoardWriter(workdir, run if resumed else None) if tensorboard else None)
