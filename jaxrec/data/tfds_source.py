"""Loads a TensorFlow Datasets image classification set into uint8 arrays.

A data set prepared in TFDS's array_record format is read without TensorFlow (TFDS's random-access
data source, images decoded by Pillow), so training never needs it. TensorFlow is needed only to
prepare a data set, or to read one prepared in the older tfrecord format: the `tfds` extra installs
its CPU build (docs/install.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from typing import Any, Callable, Iterator

import numpy as np

from jaxrec.data.types import ArrayDataset, DataError

# The format jaxrec prepares data sets in: readable without TensorFlow, with random access.
PREPARE_FORMAT = "array_record"
_CHUNK = 4096

log = logging.getLogger(__name__)


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("tensorflow") is not None


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
    """TFDS warns while it looks for a data set ('Variant folder ... has no dataset_info.json', also
    when it is simply not prepared) and recommends OpenCV when Pillow decodes: jaxrec's own messages
    say what matters, so only errors are shown."""
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_log.setLevel(level)


def _keep_tensorflow_off_accelerators() -> None:
    """TF only decodes here; JAX owns the GPUs/TPUs (TF would otherwise grab their memory)."""
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass


def _ways_out(name: str, data_dir: str | None) -> str:
    return (f"Ways out: (1) prepare it where there is internet (`python experiments/prepare_tfds.py {name} "
            f"--data_dir DIR`) and pass --data_dir with that directory "
            f"(now: {data_dir or 'TFDS default ~/tensorflow_datasets'}); (2) pass --download to let TFDS fetch "
            f"it now (needs internet and TensorFlow); (3) pass an image-folder path laid out "
            f"<root>/<split>/<class>/<image> as --dataset; (4) try the pipeline offline with the shipped sample: "
            f"--dataset cifar10_sample.")


def _builder(name: str, data_dir: str | None) -> Any:
    """TFDS's builder for `name` (a tfds.core.DatasetBuilder)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise DataError(f"unknown data set {name!r}: it is neither a TFDS name nor an existing image folder. "
                        f"Use a TFDS name (cifar10, cifar100, mnist, fashion_mnist, ...), 'cifar10_sample', or "
                        f"a path to a folder laid out <root>/<split>/<class>/<image>.") from err


def _prepare(builder: Any, name: str) -> None:
    """Downloads and prepares the data set as array_record (TFDS encodes its images with TensorFlow)."""
    from tensorflow_datasets.core.download import download_manager, extractor, util

    if not tensorflow_installed():
        raise DataError(f"preparing TFDS data set {name!r} needs TensorFlow, which this install leaves out: "
                        f"`pip install \"jaxrec[tfds]\"` (the CPU build) and run again, or prepare it in another "
                        f"environment with `python experiments/prepare_tfds.py {name} --data_dir DIR` and pass "
                        f"--data_dir DIR")
    _keep_tensorflow_off_accelerators()
    # requests' errors are OSErrors (offline: after TFDS's retries, minutes); TFDS's own are Exceptions.
    failures = (OSError, util.DownloadError, download_manager.NonMatchingChecksumError, extractor.ExtractError)
    try:
        builder.download_and_prepare(file_format=PREPARE_FORMAT)
    except failures as err:
        raise DataError(f"downloading TFDS data set {name!r} failed ({type(err).__name__}: {str(err)[:200]}): check "
                        f"the internet connection and run again, or prepare it where there is internet "
                        f"(`python experiments/prepare_tfds.py {name} --data_dir DIR`) and pass --data_dir "
                        f"DIR") from err


def _check_features(builder: Any, name: str) -> None:
    """An `image` of one fixed shape and a `label`: what jaxrec's arrays hold."""
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(f"TFDS data set {name!r} has features {list(features)}; jaxrec needs 'image' and 'label'")
    shape = features["image"].shape
    if None in shape:
        raise DataError(f"TFDS data set {name!r} has images of different sizes ({shape}); jaxrec reads TFDS sets "
                        f"whose images share one size. Save it as an image folder <root>/<split>/<class>/<image> "
                        f"and pass that: jaxrec decodes a folder to one size (--image_size)")


def _is_random_access(builder: Any) -> bool:
    """Whether the prepared files can be read without TensorFlow (array_record, parquet)."""
    from tensorflow_datasets.core import file_adapters

    return bool(set(builder.info.available_file_formats()) & file_adapters.FileFormat.with_random_access())


def _reader(builder: Any, name: str) -> Callable[[Any, str], tuple[np.ndarray, np.ndarray]]:
    """The function that reads this set's splits: the data source, or TensorFlow for tfrecord files."""
    if _is_random_access(builder):
        return _read_data_source
    if not tensorflow_installed():
        raise DataError(f"TFDS data set {name!r} is prepared in {builder.data_dir} as "
                        f"{builder.info.file_format.value}, which only TensorFlow reads, and this install leaves it "
                        f"out: `pip install \"jaxrec[tfds]\"` (the CPU build), or prepare it as {PREPARE_FORMAT} in "
                        f"another directory (`python experiments/prepare_tfds.py {name} --data_dir DIR`) and pass "
                        f"--data_dir DIR")
    return _read_with_tensorflow


def _read_data_source(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a split through TFDS's data source, chunk by chunk, in file order: no TensorFlow."""
    source = builder.as_data_source(split=split)
    images, labels = [], []
    for start in range(0, len(source), _CHUNK):
        examples = source.__getitems__(range(start, min(start + _CHUNK, len(source))))
        images.append(np.stack([example["image"] for example in examples]))
        labels.append(np.asarray([example["label"] for example in examples]))
    return (np.concatenate(images), np.concatenate(labels)) if images else (np.zeros(0), np.zeros(0))


def _read_with_tensorflow(builder: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a split prepared as tfrecord, which only TensorFlow reads, in file order as the data source
    reads (TFDS would otherwise interleave the shards)."""
    import tensorflow_datasets as tfds

    _keep_tensorflow_off_accelerators()
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    dataset = builder.as_dataset(split=split, as_supervised=True, read_config=read_config)
    # Fixed-size chunks rather than batch_size=-1, which needs the split's size in dataset_info.
    chunks = list(tfds.as_numpy(dataset.batch(_CHUNK)))
    if not chunks:
        return np.zeros(0), np.zeros(0)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def load_tfds(name: str, split: str, data_dir: str | None, download: bool) -> ArrayDataset:
    """Reads a whole TFDS split with an `image` and a `label` feature into memory."""
    with _quiet_tfds():
        builder = _builder(name, data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        if not download:
            raise DataError(f"TFDS data set {name!r} is not prepared in {builder.data_dir} and this run may not "
                            f"download it. " + _ways_out(name, data_dir))
        _prepare(builder, name)
    _check_features(builder, name)
    read = _reader(builder, name)
    log.info("reading TFDS %s/%s from %s (%s)", name, split, builder.data_dir,
             "data source" if read is _read_data_source else "TensorFlow")
    try:
        with _quiet_tfds():
            images, labels = read(builder, split)
    except (KeyError, ValueError) as err:
        raise DataError(f"TFDS data set {name!r} cannot read split {split!r} ({err}); it has "
                        f"{list(builder.info.splits) or 'no recorded splits'}") from err
    if not len(images):
        raise DataError(f"TFDS split {name}/{split} is empty")
    return ArrayDataset(images.astype(np.uint8), labels.astype(np.int32), tuple(builder.info.features["label"].names))
