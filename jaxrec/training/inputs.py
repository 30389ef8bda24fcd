"""Which input path a run takes (`--input`, docs/design.md) and each path's memory check."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import jax
import numpy as np

from jaxrec.config import Config
from jaxrec.core.optim import check_lookahead
from jaxrec.core.parallel import local_devices
from jaxrec.core.tta import VIEWS
from jaxrec.data import DataSplits, load_data
from jaxrec.data.sources import stats_bytes, stream_data, stream_splits, streams
from jaxrec.data.stream import StreamedDataset
from jaxrec.data.types import DataError
from jaxrec.errors import InputError
from jaxrec.models import create_model
from jaxrec.models.recipes import check_images
from jaxrec.runtime import distributed, memory

log = logging.getLogger(__name__)


def check_devices_fit(config: Config, splits: Sequence, models: int, devices: Sequence[jax.Device]) -> None:
    """Raises InputError when training `models` models with these splits on every device cannot fit beside the
    evaluation call (each device's share of the eval batch, with test-time augmentation's views)."""
    train, evaluation = splits
    classes = len(train.class_names)
    batch = (config.batch_size // jax.process_count(), *train.image_shape)  # this process's
    memory.check_training_fits(create_model(config, classes), batch, local_devices(devices),
                               train.nbytes + evaluation.nbytes, models, evaluation_call(config, classes, devices))


def evaluation_call(config: Config, classes: int, devices: Sequence[jax.Device]) -> tuple[Any, int, int]:
    """The evaluation call that memory counts beside training: the eval model, a device's share of the eval batch
    (rounded up: the last device's is padded), and test-time augmentation's views."""
    return create_model(config, classes, for_eval=True), -(-config.eval_batch_size // len(devices)), VIEWS[config.tta]


def open_data(config: Config, models: int, devices: Sequence[jax.Device]) -> DataSplits:
    """The run's data: decoded into memory (`--input device`), streamed (`stream`), or, for `auto`, on
    the devices where it fits and streamed otherwise; the log line says which and why. In a
    multi-process run the processes agree: if one host must stream, they all do."""
    try:
        splits, data = stream_splits(config.data_plan), None
    except DataError:  # e.g. a TFDS set only TensorFlow reads, which cannot stream: the device path says what it needs
        if config.input == "stream":
            raise
        data = load_data(config.data_plan)  # decoded already: what is left to check is training with it
        splits = (data.train, data.eval)
    # Before a model is built for them, and before the memory checks' advice, which a batch too large misleads.
    if len(splits[0]) < config.batch_size:
        raise InputError(f"the training split has {len(splits[0])} examples, fewer than one batch of "
                         f"{config.batch_size}; lower --batch_size")
    check_lookahead(config.optimisation, len(splits[0]) // config.batch_size)
    check_images(config, splits[0].image_shape, len(splits[0].class_names), f"--dataset {config.dataset}")
    if data is not None:
        check_devices_fit(config, splits, models, devices)
        return data
    problem = None
    if config.input != "stream":  # decoding the splits into host memory, then training with them on every device
        try:
            memory.check_images_fit(len(splits[0]) + len(splits[1]), splits[0].image_shape[:2],
                                    splits[0].image_shape[2], "the run's image size")
            check_devices_fit(config, splits, models, devices)
        except InputError as err:
            problem = str(err)
    if problem and models > 1:  # a seed group cannot stream (check_group)
        raise InputError(f"{problem}; or pass --seeds_per_program 1 --input stream to read the data as batches need it")
    if streams(config.data_plan, problem):
        check_stream_fits(config, splits[0], devices)
        why = (problem or "another process's data does not fit") if config.input == "auto" else None
        log.info("input: streamed from the files (--input %s)%s", config.input, f": {why}" if why else "")
        return stream_data(config.data_plan, splits, config.progress and distributed.is_primary())
    log.info("input: decoded into memory and copied onto the devices (--input %s)%s", config.input,
             f"; --data_workers {config.data_workers} only read streamed data, so none start" if config.data_workers
             else "")
    return load_data(config.data_plan, splits)


def stream_bytes(config: Config, image_shape: tuple[int, int, int], classes: int, devices: Sequence[jax.Device],
                 count: int) -> tuple[int, int, int]:
    """A streamed run's memory in bytes: (the channel-statistics pass's over `count` training images, on the host;
    the run's on the host: readers, --data_workers and batches, with every CPU device's; one device's: its training
    step or its evaluation call beside the training state). devices: all."""
    mine = local_devices(devices)
    evaluation = evaluation_call(config, classes, devices)
    train_share, eval_share = config.batch_size // len(devices), evaluation[1]
    image = int(np.prod(image_shape))
    device = memory.device_bytes(create_model(config, classes), image_shape, train_share, evaluation)
    readers = sum(memory.reader_bytes(len(mine) * share * image, image, config.data_workers)
                  for share in (train_share, eval_share))
    host = readers + (device * len(mine) if mine[0].platform == "cpu" else 0)
    return stats_bytes(image_shape, count), host, device


def check_stream_fits(config: Config, train: StreamedDataset, devices: Sequence[jax.Device]) -> None:
    """Refuses, before any image is decoded, a streamed run whose channel-statistics pass, training
    batch, evaluation batch or data workers cannot fit in memory, naming each smaller --batch_size,
    --eval_batch_size, --image_size or --data_workers that would (with the others as given)."""
    mine = local_devices(devices)
    host, device = memory.host_available(), memory.device_available(mine[0])
    classes, shape = len(train.class_names), tuple(train.image_shape)

    def problem(size: tuple[int, int, int], **changed: int) -> str | None:
        stats, running, one_device = stream_bytes(config.replace(**changed), size, classes, devices, len(train))
        checks = ((stats, host, "the channel-statistics pass"), (running, host, "training"),
                  (one_device, None if mine[0].platform == "cpu" else device, "one device"))
        return next(filter(None, (memory.shortfall(*check) for check in checks)), None)

    found = problem(shape)
    if found is None:
        return
    square = lambda side: (side, side, shape[2])
    batch = memory.largest(lambda b: not problem(shape, batch_size=b), config.batch_size - 1, len(devices))
    eval_batch = memory.largest(lambda e: not problem(shape, eval_batch_size=e), config.eval_batch_size - 1)
    fixes = [f"--batch_size {batch}", f"--eval_batch_size {eval_batch}",
             f"--data_workers {memory.largest(lambda w: not problem(shape, data_workers=w), config.data_workers - 1)}"
             if config.data_workers else "--data_workers 0",
             f"--image_size {memory.largest(lambda side: not problem(square(side)), max(shape[:2]) - 1)}"]
    usable = [fix for fix in fixes if int(fix.split()[1]) >= (8 if "image" in fix else 1 if "batch" in fix else 0)
              and fix not in (f"--data_workers {config.data_workers}",)]
    way = f"pass {', '.join(usable[:-1])} or {usable[-1]}" if len(usable) > 1 else (
        f"pass {usable[0]}" if usable else "use a machine with more memory")
    raise InputError(f"training 1 model(s) on {'x'.join(map(str, shape))} images in batches of {config.batch_size}, "
                     f"streamed (evaluation batches of {config.eval_batch_size}, {config.data_workers} "
                     f"--data_workers): {found}; {way}")
