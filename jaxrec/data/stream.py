"""Streaming input (`--input stream`, docs/design.md): examples decoded as batches need them, with Grain. Nothing here
imports JAX itself (Grain does): its worker processes import this module to read."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from jaxrec.data import decode, image_folder
from jaxrec.data.types import DataError
from jaxrec.runtime.interrupt import SIGNALS  # what a terminal or a scheduler sends the whole process group

log = logging.getLogger(__name__)
BUFFER = 4  # batches Grain keeps ready per reader (thread pool or worker process)


@dataclasses.dataclass(frozen=True)
class FolderReader:
    """Reads example i of an image folder's split, decoded by the on-device path's rules (decode.read_image)."""

    # Out of the repr: Grain names a transform by its repr, which would spell out every path at each reader start.
    paths: tuple[str, ...] = dataclasses.field(repr=False)
    labels: np.ndarray = dataclasses.field(repr=False)
    size: tuple[int, int]
    channels: int
    resize: str = "stretch"

    def __len__(self) -> int:
        return len(self.paths)

    def example(self, index: int) -> tuple[np.ndarray, int]:
        """(image uint8 [H, W, C], label)."""
        image = decode.read_image(Path(self.paths[index]), self.size, self.channels, self.resize)[0]
        return image, int(self.labels[index])


@dataclasses.dataclass
class TfdsReader:
    """Reads example i of a prepared TFDS split (array_record data source: no TensorFlow), resized as on device."""

    name: str
    split: str
    data_dir: str | None
    size: tuple[int, int]
    channels: int
    count: int
    resize: str = "stretch"
    _source: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}  # each worker opens its own

    def __len__(self) -> int:
        return self.count

    def _record(self, index: int) -> dict[str, Any]:
        if self._source is None:
            from jaxrec.data import tfds_prepare  # noqa: PLC0415 - TFDS takes seconds to import

            with tfds_prepare.quiet():
                self._source = tfds_prepare.builder(self.name, self.data_dir).as_data_source(split=self.split)
        return self._source[int(index)]

    def example(self, index: int) -> tuple[np.ndarray, int]:
        """(image uint8 [H, W, C], label)."""
        record = self._record(index)
        image = np.asarray(record["image"], np.uint8)
        if image.shape[:2] != tuple(self.size) or image.shape[-1] != self.channels:
            image = decode.convert(image, self.size, self.channels, self.resize)[0]
        return image, int(record["label"])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([self._record(i)["label"] for i in range(self.count)], np.int32)


@dataclasses.dataclass(frozen=True)
class StreamedDataset:
    """One split read on demand: an ArrayDataset without the images in memory; `take` decodes a few."""

    reader: Any  # FolderReader or TfdsReader
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def labels(self) -> np.ndarray:
        return self.reader.labels

    @property
    def nbytes(self) -> int:
        """Bytes of the split decoded: what the on-device path would hold."""
        return len(self) * int(np.prod(self.image_shape))

    def take(self, indices: Sequence[int]) -> np.ndarray:
        """The examples `indices` decoded, uint8 [n, H, W, C] (in threads: Pillow releases the GIL)."""
        out = np.empty((len(indices), *self.image_shape), np.uint8)

        def read(position: int) -> None:
            out[position] = self.reader.example(int(indices[position]))[0]

        image_folder.map_in_threads(read, range(len(indices)))
        return out


def _read_batch(reader: Any, row: np.ndarray) -> dict[str, np.ndarray]:
    """A row of example indices -> {'image' [b, H, W, C], 'label' [b]}; what Grain maps."""
    images, labels = zip(*(reader.example(int(index)) for index in row))
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


def _worker_init(worker: int, workers: int) -> None:
    """In each worker: ignores Ctrl-C and SIGTERM, which reach the whole process group, for the training process to
    act on (a worker that died of one mid-start or mid-evaluation left it writing to a pipe no one read, or reporting
    a dead worker); Grain stops workers itself, and one whose training process is gone ends within a second."""
    del worker, workers
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="jaxrec-parent-watch").start()


class StreamError(DataError):
    """Reading a batch failed: a file that cannot be read, or a data worker that died."""


class RowReader:
    """The batches of `rows` (int [n, b]: each a batch's example indices), in order, read ahead by Grain in
    threads (`workers` 0) or in `workers` processes, which start with the first batch and end with `close` or this
    process. `repeat`: the rows over and over (an eval split read at every evaluation by the same workers)."""

    def __init__(self, reader: Any, rows: np.ndarray, workers: int, repeat: bool = False):
        self._reader, self._rows, self._workers, self._repeat = reader, np.asarray(rows), workers, repeat
        self._iterator = None

    def _start(self) -> Iterator[dict[str, np.ndarray]]:
        import grain  # noqa: PLC0415 - only a streamed run needs it

        dataset = grain.MapDataset.source(list(self._rows)).map(functools.partial(_read_batch, self._reader))
        if self._repeat:
            dataset = dataset.repeat(None)
        iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1 if self._workers else 2,
                                                             prefetch_buffer_size=BUFFER))
        if not self._workers:
            return iter(iterable)
        from absl import flags  # noqa: PLC0415 - Grain's workers read absl flags, which only an absl app parses

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        return iter(iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers,
                                                                      per_worker_buffer_size=BUFFER),
                                         worker_init_fn=_worker_init))

    def __iter__(self) -> "RowReader":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        # Ctrl-C and SIGTERM reach the whole process group. Blocked in this thread while it reads, they stay blocked
        # in every thread and worker process Grain starts (a signal mask is inherited), so no worker dies of one
        # mid-start (_worker_init then ignores them). Another thread here takes them; the loop acts after the call.
        if self._iterator is None and self._workers:
            # Started inside the block, the resource tracker would unblock them: it unblocks, rather than restores,
            # the signals it blocks while it starts. Shared by Grain's workers, it reports at exit shared memory a
            # worker created and this process released as leaked (bpo-38119); it takes this interpreter's warning
            # options when it starts.
            quiet = "ignore:resource_tracker:UserWarning"
            if quiet not in sys.warnoptions:
                sys.warnoptions.append(quiet)
            resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            if self._iterator is None:
                self._iterator = self._start()
            return _checked_next(self._iterator)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def close(self) -> None:
        """Stops the reading and its workers (Grain terminates them)."""
        close = getattr(self._iterator, "close", None)
        self._iterator = None
        if close:
            close()


def _checked_next(iterator: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The next batch, raising a worker's unreadable file or its death as a one-line StreamError."""
    try:
        batch = next(iterator)
    except DataError as err:  # Grain adds lines of its own to the message
        raise StreamError(str(err).strip().splitlines()[0]) from err
    except Exception as err:  # noqa: BLE001 - Grain re-raises what a worker hit as it can
        text = str(err).strip().splitlines()
        if "terminated unexpectedly" in str(err):
            code = str(err).split("exit code")[-1].strip(" .").split(".")[0] if "exit code" in str(err) else "?"
            raise StreamError(f"a data worker process died (exit code {code}: killed, or out of memory, where "
                              f"fewer --data_workers need less)") from err
        cause = next((line for line in text if "cannot read image" in line), None)
        if cause:
            raise StreamError(cause[cause.index("cannot read image"):]) from err
        raise
    # Copied out of the worker's shared memory, which is then released at once, not at exit.
    return {name: np.array(value) for name, value in batch.items()}
