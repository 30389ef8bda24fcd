"""Which input path a run takes (`--input`): every split decoded once and copied onto the devices, or
batches streamed from the files as training needs them (jaxrec.data.stream). Both feed the same
examples in the same order; `auto` takes the first where it fits the memory check."""

from __future__ import annotations

import logging
from typing import Sequence

import jax

from jaxrec.config import Config, check_image_shape
from jaxrec.data import DataSplits, load_data
from jaxrec.data.sources import stream_data, stream_splits
from jaxrec.data.types import DataError
from jaxrec.errors import InputError
from jaxrec.models import create_model
from jaxrec.runtime import distributed, memory
from jaxrec.training.parallel import local_devices

log = logging.getLogger(__name__)


def check_fits(config: Config, splits: Sequence, models: int, devices: Sequence[jax.Device]) -> None:
    """Raises InputError (the memory module's line) when the on-device path cannot hold these splits:
    decoding them into host memory, or training with them on every device."""
    train, evaluation = splits
    size, channels = train.image_shape[:2], train.image_shape[2]
    memory.check_images_fit(len(train) + len(evaluation), size, channels, "the run's image size")
    memory.check_training_fits(create_model(config, len(train.class_names)), train.image_shape,
                               config.batch_size // jax.process_count(), local_devices(devices),
                               train.nbytes + evaluation.nbytes, models)


def open_data(config: Config, models: int, devices: Sequence[jax.Device]) -> DataSplits:
    """The run's data: decoded into memory (`--input device`), streamed (`stream`), or, for `auto`, on
    the devices where it fits and streamed otherwise; the log line says which and why. In a
    multi-process run the processes agree: if one host must stream, they all do."""
    if config.input == "stream":
        if models > 1:  # each model of a seed group reads its own order: one stream cannot feed them
            raise InputError(f"--input stream trains one model per program, and this one has {models}; use "
                             f"--seeds_per_program 1, or --input device where the data fits")
        log.info("input: streamed from the files (--input stream)")
        return stream_data(config, progress=_shows_progress(config))
    try:
        splits = stream_splits(config)
    except DataError:  # e.g. a TFDS set only TensorFlow reads, which cannot stream: the device path says what it needs
        return load_data(config)
    check_image_shape(config, splits[0].image_shape, f"--dataset {config.dataset}")  # before a model is built for them
    try:
        check_fits(config, splits, models, devices)
        problem = None
    except InputError as err:
        if config.input == "device" or models > 1:
            way = "pass --input stream" if models == 1 else "pass --seeds_per_program 1 --input stream"
            raise InputError(f"{err}; or {way} to read the data as batches need it") from None
        problem = str(err)
    if config.input == "auto" and distributed.max_over_processes(int(problem is not None)):
        log.info("input: streamed from the files (--input auto): %s", problem or "another process's data does not fit")
        return stream_data(config, splits, _shows_progress(config))
    log.info("input: decoded into memory and copied onto the devices (--input %s)", config.input)
    return load_data(config, splits)


def _shows_progress(config: Config) -> bool:
    return config.progress and distributed.is_primary()
