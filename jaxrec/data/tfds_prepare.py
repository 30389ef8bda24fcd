"""Preparing a TFDS data set once, as array_record, which jaxrec reads without TensorFlow. No JAX is imported,
here or by `jaxrec prepare`, so it can run beside a separate TensorFlow (docs/install.md)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Iterator

from jaxrec.config import is_folder_path
from jaxrec.data.types import SAMPLES
from jaxrec.errors import InputError

FORMAT = "array_record"
HOW = "`jaxrec prepare {name} --data_dir DIR`"  # the command, in messages


def check_tfds_name(name: str) -> None:
    """Refuses what training reads as it is, which TFDS would call an unknown name: a sample, an image folder."""
    if not name.strip():  # TFDS's refusal is a page of name formats
        raise InputError(f"jaxrec prepare needs a data set name, got {name!r}; pass a TFDS name, e.g. cifar10")
    if name in SAMPLES:
        what, needs_none = f"{name} is the sample shipped with jaxrec", "the sample"
    elif Path(name).expanduser().is_dir():
        what, needs_none = f"{name} is an image folder", "an image folder"
    elif is_folder_path(name) or Path(name).expanduser().exists():
        what, needs_none = f"{name} is a path", "an image folder"
    else:
        return
    raise InputError(f"{what}, not a TFDS data set: jaxrec prepare is for TFDS data sets only, and {needs_none} needs "
                     f"no preparation; train on it directly: jaxrec train --dataset {name}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Shows only TFDS's errors: it warns while looking for a set ('... has no dataset_info.json', also when it is
    simply not prepared) and recommends OpenCV, where jaxrec's own messages say what matters."""
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_log.setLevel(level)


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("tensorflow") is not None


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow only encodes or decodes for jaxrec; JAX owns the GPUs/TPUs, whose memory TF would take."""
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass


def builder(name: str, data_dir: str | None) -> Any:
    """TFDS's builder (a tfds.core.DatasetBuilder) for `name` in `data_dir` (None: TFDS's default)."""
    import tensorflow_datasets as tfds

    try:
        with quiet():
            return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise InputError(f"unknown data set {name!r}: it is neither a TFDS name nor an existing image folder. "
                         f"Use a TFDS name (cifar10, cifar100, mnist, fashion_mnist, ...), 'cifar10_sample', or "
                         f"a path to a folder laid out <root>/<split>/<class>/<image>.") from err


def readable_without_tensorflow(prepared: Any) -> bool:
    """Whether a prepared builder's files have random access (array_record, parquet): no TensorFlow."""
    from tensorflow_datasets.core import file_adapters

    return bool(set(prepared.info.available_file_formats()) & file_adapters.FileFormat.with_random_access())


def check_prepared(prepared: Any, name: str) -> None:
    """Raises InputError if `prepare` left `name` unprepared: TFDS returns without a word over an unfinished one."""
    if not ready(name, str(prepared.data_dir_root)):
        raise InputError(f"TFDS returned without preparing {name!r}: {prepared.data_dir} holds files of an "
                         f"unfinished preparation (no dataset_info.json); delete that folder and run again")


def ready(name: str, data_dir: str | None) -> bool:
    """Whether `name` is prepared in `data_dir` as jaxrec reads it without TensorFlow."""
    with quiet():
        found = builder(name, data_dir)
        return found.is_prepared() and readable_without_tensorflow(found)


def prepare(unprepared: Any, name: str) -> None:
    """Downloads and prepares a builder's data set as array_record; one-line InputErrors for what the user can fix."""
    with quiet():
        prepared = unprepared.is_prepared()
    if prepared:
        if not readable_without_tensorflow(unprepared):
            raise InputError(f"{name} is prepared in {unprepared.data_dir} as {unprepared.info.file_format.value}, "
                             f"which jaxrec reads only with TensorFlow: pass another --data_dir to prepare it as "
                             f"{FORMAT}")
        return
    if not tensorflow_installed():
        raise InputError(f"preparing TFDS data set {name!r} needs TensorFlow, which this install leaves out: "
                         f"`pip install \"jaxrec[tfds]\"` (the CPU build) and run again; on a TPU or GPU runtime "
                         f"install it into a separate folder and prepare from there (docs/install.md)")
    from tensorflow_datasets.core.download import download_manager, extractor, util

    hide_accelerators_from_tensorflow()
    # requests' errors are OSErrors (offline: after TFDS's retries, minutes); TFDS's own are Exceptions.
    failures = (OSError, util.DownloadError, download_manager.NonMatchingChecksumError, extractor.ExtractError)
    try:
        unprepared.download_and_prepare(file_format=FORMAT)
    except failures as err:
        raise InputError(f"downloading TFDS data set {name!r} failed ({type(err).__name__}: {str(err)[:200]}): "
                         f"check the internet connection and run again, or prepare it where there is internet "
                         f"({HOW.format(name=name)}) and pass --data_dir DIR") from err
