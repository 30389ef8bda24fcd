"""Where a training run stands (`RunState`): the part of a run that is not arrays, saved with every checkpoint
(docs/design.md, "One loop"; docs/checkpoints.md)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

# The record fields that measure time, not what was computed: two runs computing the same agree on all others.
TIMING_FIELDS = ("train_seconds", "images_per_second", "eval_seconds", "wall_seconds", "includes_compilation")


@dataclasses.dataclass(frozen=True)
class Record:
    """One finished epoch: a line of metrics.jsonl. The test_* fields and eval_seconds are set when
    the epoch ended with an evaluation, and left out of the line otherwise."""

    epoch: int  # counted from 1
    step: int   # global steps done at the end of the epoch
    train_loss: float  # means over the epoch's steps
    train_accuracy: float
    train_seconds: float  # device-call time of the epoch
    images_per_second: float
    includes_compilation: bool = False  # the epoch made a call of a length this process had not compiled
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_macro_f1: float | None = None
    eval_seconds: float | None = None
    wall_seconds: float | None = None  # of the whole run so far, all sessions together

    @property
    def evaluated(self) -> bool:
        return self.test_loss is not None

    def replace(self, **changes: Any) -> "Record":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The metrics.jsonl line: every field that is set, in the order above."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class RunState:
    """The loop's position and running totals. Immutable: each change returns a new RunState."""

    step: int = 0              # training steps done in the whole run
    epoch: int = 0             # epochs finished
    position: int = 0          # steps done in the current epoch
    loss_sum: float = 0.0      # of the current epoch's per-step training losses
    accuracy_sum: float = 0.0  # of its per-step training accuracies
    train_seconds: float = 0.0  # device-call time of the current epoch
    records: tuple[Record, ...] = ()  # one per finished epoch, as in metrics.jsonl
    elapsed_seconds: float = 0.0  # wall time of the run up to the last save, all sessions together
    # Mean training loss and accuracy of the device call that ended at `step` (None: no call yet, or a checkpoint
    # without them): what TensorBoard shows at `step`, rewritten on resume.
    call_loss: float | None = None
    call_accuracy: float | None = None

    def after_steps(self, losses: Iterable[float], accuracies: Iterable[float], seconds: float) -> "RunState":
        """The state after one device call that trained len(losses) steps in `seconds`."""
        losses, accuracies = list(losses), list(accuracies)
        loss_sum, accuracy_sum, count = self.loss_sum, self.accuracy_sum, len(losses)
        for loss, accuracy in zip(losses, accuracies):  # step by step: the same sums whatever the steps per call
            loss_sum += loss
            accuracy_sum += accuracy
        return dataclasses.replace(self, step=self.step + count, position=self.position + count,
                                   loss_sum=loss_sum, accuracy_sum=accuracy_sum,
                                   train_seconds=self.train_seconds + seconds,
                                   call_loss=sum(losses) / count if count else None,
                                   call_accuracy=sum(accuracies) / count if count else None)

    def epoch_means(self) -> tuple[float, float]:
        """Mean training loss and accuracy of the current epoch so far."""
        steps = max(self.position, 1)
        return self.loss_sum / steps, self.accuracy_sum / steps

    def end_epoch(self, record: Record) -> "RunState":
        """The state at the start of the next epoch, with `record` appended."""
        return dataclasses.replace(self, epoch=self.epoch + 1, position=0, loss_sum=0.0, accuracy_sum=0.0,
                                   train_seconds=0.0, records=(*self.records, record))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "records": [r.to_json() for r in self.records]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunState":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        return cls(**{**values, "records": tuple(Record.from_json(r) for r in values.get("records", ()))})
