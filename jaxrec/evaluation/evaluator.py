"""The whole-split `Evaluator` (padded, masked batches; sums on the devices) that training, `jaxrec evaluate` and
the benchmark run."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

from jaxrec.config import EVALUATION_FIELDS, Config, DataPlan, is_folder_path
from jaxrec.core.metrics import report, summarize_eval
from jaxrec.core.parallel import local_rows, make_eval_fn, replicate, select_devices, unreplicate
from jaxrec.core.pipeline import Preprocess, eval_indices
from jaxrec.core.tta import with_tta
from jaxrec.data import stream
from jaxrec.data.sources import decode_listed, is_image_folder, load_tfds_split, stream_split, streams
from jaxrec.data.stream import StreamedDataset
from jaxrec.data.types import ArrayDataset, DataError
from jaxrec.run.checkpoints import Trained
from jaxrec.runtime import memory
from jaxrec.runtime.setup import prepare

log = logging.getLogger(__name__)


class Evaluator:
    """Evaluates replicated eval_variables over `split` (docs/design.md, Whole-set evaluation) at any --tta level,
    `global_batch` examples per call; a streamed split is read by `workers` processes, each its devices' rows."""

    def __init__(self, apply_fn: Callable, split: ArrayDataset | StreamedDataset, preprocess: Preprocess,
                 devices: Sequence[jax.Device], global_batch: int, workers: int = 0):
        # Both are cached: each (level, output) compiles once.
        self._fn = lambda tta, **kwargs: make_eval_fn(with_tta(apply_fn, tta), preprocess, devices, **kwargs)
        self._count = len(split)
        n = len(devices)
        self.per_device_batch = -(-global_batch // n)
        indices, mask = eval_indices(self._count, self.per_device_batch * n)
        self._batches = [(local_rows(i.reshape(n, -1), devices), local_rows(m.reshape(n, -1), devices))
                         for i, m in zip(indices, mask)]
        if isinstance(split, StreamedDataset):
            # Every evaluation reads the same rows: one reader repeats them, its workers kept between evaluations.
            self._reader = stream.RowReader(split.reader, np.stack([i.reshape(-1) for i, _ in self._batches]),
                                            workers, repeat=True)
            # A read batch is all the devices hold: each gathers its rows in order.
            self._in_order = np.broadcast_to(np.arange(self.per_device_batch, dtype=np.int32),
                                             self._batches[0][0].shape)
        else:
            self._reader = None
            self._split = (replicate(split.images, devices), replicate(split.labels, devices))

    def _inputs(self) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Per batch, the eval call's (images, labels, indices, mask), [local devices, ...]; a streamed split's
        batches are all read even when the caller stops early (lower), so the next call starts at the first."""
        for read, (indices, mask) in enumerate(self._batches):
            if self._reader is None:
                yield (*self._split, indices, mask)
                continue
            batch = next(self._reader)
            try:
                yield (batch["image"].reshape(*indices.shape, *batch["image"].shape[1:]),
                       batch["label"].reshape(indices.shape), self._in_order, mask)
            except GeneratorExit:
                for _ in range(len(self._batches) - read - 1):
                    next(self._reader)
                raise

    def __call__(self, variables: Any, tta: int = 0) -> dict[str, Any]:
        """Loss, accuracy, macro/weighted scores, top-k, confusion matrix (see metrics.summarize_eval)."""
        fn, totals = self._fn(tta), None
        with contextlib.closing(self._inputs()) as batches:
            for inputs in batches:  # sums stay on the device until the end
                # One eval call in flight at a time: its psum blocks a worker thread of XLA:CPU's shared
                # pool per device, and two calls' psums could take them all (jaxrec.core.steps.train_step).
                sums = jax.block_until_ready(fn(variables, *inputs))
                totals = sums if totals is None else jax.tree_util.tree_map(jax.numpy.add, totals, sums)
        return summarize_eval(jax.device_get(unreplicate(totals)))

    def probabilities(self, variables: Any, tta: int = 0) -> np.ndarray:
        """Each example's softmax class probabilities, float32 [N, classes], in the split's order."""
        fn = self._fn(tta, probabilities=True)
        with contextlib.closing(self._inputs()) as batches:
            rows = [_all_processes(np.asarray(fn(variables, images, indices)))
                    for images, _, indices, _ in batches]
        flat = np.concatenate([b.reshape(-1, b.shape[-1]) for b in rows])  # device d holds a contiguous slice
        return flat[:self._count]  # padding comes last

    def lower(self, variables: Any) -> Any:
        """The eval call of one batch, lowered (for compile time and XLA's cost analysis)."""
        with contextlib.closing(self._inputs()) as batches:
            return self._fn(0).lower(variables, *next(batches))

    def close(self) -> None:
        """Ends the reading of a streamed split; its worker processes stop."""
        if self._reader is not None:
            self._reader.close()


def _all_processes(rows: np.ndarray) -> np.ndarray:
    """This process's device rows -> every process's, in device order (devices are ordered by process)."""
    if jax.process_count() == 1:
        return rows
    from jax.experimental import multihost_utils  # noqa: PLC0415 - only multi-process runs need it
    return np.asarray(multihost_utils.process_allgather(rows, tiled=True))


def evaluate_trained(trained: Trained, config: Config | None = None) -> dict[str, Any]:
    """The evaluation report (core.metrics.report) of a trained model, normalised with the training mean/std; `config`
    (default: the run's) may change only EVALUATION_FIELDS; its scores with and without --tta: docs/evaluation.md."""
    config = prepare(config or trained.config, only=EVALUATION_FIELDS, batch_sizes=())
    data = split_to_evaluate(config.data_plan, trained)
    devices = select_devices(config.num_devices)
    variables = replicate(trained.variables, devices)

    with contextlib.closing(Evaluator(trained.apply_fn(0), data, trained.preprocess(), devices,
                                      config.eval_batch_size, config.data_workers)) as evaluator:
        plain = evaluator(variables)
        augmented = evaluator(variables, config.tta) if config.tta else plain
    return report(augmented, trained.class_names, config.top_k, plain, config.tta)


def split_to_evaluate(plan: DataPlan, trained: Trained) -> ArrayDataset | StreamedDataset:
    """plan.eval_split of plan.dataset for `trained`: in memory or streamed, as jaxrec.data.sources.streams
    decides for training (logged when streamed); a TFDS set is read into memory."""
    root = Path(plan.dataset).expanduser()  # a recorded path moved: the data layer cannot tell it from a typed one
    if plan.dataset == trained.config.dataset and is_folder_path(plan.dataset) and not root.exists():
        raise DataError(f"the run's image folder {root} does not exist (moved or deleted since the run trained); "
                        f"if it moved, pass its new path: --dataset NEWPATH")
    args = (plan, plan.eval_split, trained.class_names, trained.image_shape)
    if not is_image_folder(plan.dataset):
        return stream_split(*args) if plan.input == "stream" else load_tfds_split(*args)  # stream: refused
    listed = stream_split(*args)
    shape = "x".join(map(str, listed.image_shape))
    problem = memory.shortfall(listed.nbytes, memory.host_available(),
                               f"decoding {len(listed)} images at {shape} (the model's input size)")
    if not streams(plan, problem):
        return decode_listed(listed)
    log.info("evaluating %s streamed (--input %s)%s", plan.eval_split, plan.input,
             f": {problem}" if problem else "")
    return listed
