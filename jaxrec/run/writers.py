"""Where a run's metrics go as it trains: metrics.jsonl always, TensorBoard event files with --tensorboard.
How a resumed run shows each step once: "Metric writers" in docs/design.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxrec.config.settings import TENSORBOARDX_MISSING
from jaxrec.core.run_state import Record, RunState
from jaxrec.errors import InputError
from jaxrec.run import outputs

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class Writers:
    """A run's metric writers (none at all on processes other than 0): metrics.jsonl, one line per finished epoch
    (jaxrec.core.run_state.Record.to_json), and TensorBoard's (a tensorboardX SummaryWriter) if the run has one."""

    def __init__(self, jsonl: Path | None = None, tensorboard: Any = None):
        self.jsonl = jsonl
        self.tensorboard = tensorboard

    def write_train(self, step: int, loss: float, accuracy: float) -> None:
        """The mean training loss and accuracy of the device call that ended at `step` (metrics.jsonl holds epochs)."""
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("train/loss", loss, step)
            self.tensorboard.add_scalar("train/accuracy", accuracy, step)

    def write_epoch(self, record: Record) -> None:
        """A finished epoch (with its evaluation, if it had one)."""
        if self.jsonl is not None:
            outputs.append_jsonl(self.jsonl, record.to_json())
        if self.tensorboard is not None:
            if record.evaluated:
                self.tensorboard.add_scalar("test/loss", record.test_loss, record.step)
                self.tensorboard.add_scalar("test/accuracy", record.test_accuracy, record.step)
                self.tensorboard.add_scalar("test/macro_f1", record.test_macro_f1, record.step)
            self.tensorboard.add_scalar("train/images_per_second", record.images_per_second, record.step)

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
    if not tensorboard:
        return Writers(jsonl)
    try:
        from tensorboardX import SummaryWriter  # noqa: PLC0415 - only runs with --tensorboard need it
    except ImportError:
        raise InputError(TENSORBOARDX_MISSING) from None
    # A fresh start drops whatever a session killed before its first checkpoint wrote; a resumed run drops the
    # events from its checkpoint's step on, and writes that step's again if the checkpoint holds its metrics.
    kept = resumed and run.call_loss is not None
    purge = (run.step if kept else run.step + 1) if resumed else 0
    writers = Writers(tensorboard=SummaryWriter(logdir=str(Path(workdir) / TENSORBOARD_DIR), purge_step=purge))
    if kept:
        writers.write_train(run.step, run.call_loss, run.call_accuracy)
        if run.records and run.records[-1].step == run.step:  # the checkpoint ended an epoch
            writers.write_epoch(run.records[-1])
    writers.jsonl = jsonl  # after the replay: metrics.jsonl holds the checkpoint's epochs already
    return writers
