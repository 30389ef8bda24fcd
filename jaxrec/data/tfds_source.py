"""Loads a TFDS image classification set into uint8 arrays: without TensorFlow if prepared as array_record."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import numpy as np

from jaxrec.data import tfds_prepare
from jaxrec.data.types import ArrayDataset, DataError

_CHUNK = 4096

log = logging.getLogger(__name__)


def _read_data_source(builder: Any, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A split's (images, labels) chunks through TFDS's data source, in file order: no TensorFlow."""
    source = builder.as_data_source(split=split)
    for start in range(0, len(source), _CHUNK):
        examples = source.__getitems__(range(start, min(start + _CHUNK, len(source))))
        yield (np.stack([example["image"] for example in examples]),
               np.asarray([example["label"] for example in examples]))


def _read_with_tensorflow(builder: Any, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A tfrecord split's chunks with TensorFlow, in the data source's file order (TFDS would interleave shards)."""
    import tensorflow_datasets as tfds

    tfds_prepare.hide_accelerators_from_tensorflow()
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    dataset = builder.as_dataset(split=split, as_supervised=True, read_config=read_config)
    # Fixed-size chunks rather than batch_size=-1, which needs the split's size in dataset_info.
    return tfds.as_numpy(dataset.batch(_CHUNK))


def _prepared(name: str, data_dir: str | None, download: bool) -> Any:
    """The builder of a prepared TFDS set with an `image` and a `label` (prepared now with --download)."""
    with tfds_prepare.quiet():
        builder = tfds_prepare.builder(name, data_dir)
        prepared = builder.is_prepared()
    if not prepared:
        if not download:
            raise DataError(f"TFDS data set {name!r} is not prepared in {builder.data_dir} and this run may not "
                            f"download it. Ways out: (1) prepare it where there is internet "
                            f"({tfds_prepare.HOW.format(name=name)}) and pass --data_dir with that directory (now: "
                            f"{data_dir or 'TFDS default ~/tensorflow_datasets'}); (2) pass --download to let TFDS "
                            f"fetch it now (needs internet and TensorFlow); (3) pass an image-folder path laid out "
                            f"<root>/<split>/<class>/<image> as --dataset; (4) try the pipeline offline with the "
                            f"shipped sample: --dataset cifar10_sample.")
        tfds_prepare.prepare(builder, name)
    features = builder.info.features  # an `image` of one fixed shape and a `label`: what jaxrec's arrays hold
    if "image" not in features or "label" not in features:
        raise DataError(f"TFDS data set {name!r} has features {list(features)}; jaxrec needs 'image' and 'label'")
    shape = features["image"].shape
    if None in shape:
        raise DataError(f"TFDS data set {name!r} has images of different sizes ({shape}); jaxrec reads TFDS sets "
                        f"whose images share one size. Save it as an image folder <root>/<split>/<class>/<image> "
                        f"and pass that: jaxrec decodes a folder to one size (--image_size)")
    return builder


def check_prepared_for_stream(name: str, data_dir: str | None, download: bool) -> Any:
    """The builder of a TFDS set that `--input stream` can read: prepared as array_record (random access)."""
    builder = _prepared(name, data_dir, download)
    if not tfds_prepare.readable_without_tensorflow(builder):
        raise DataError(f"TFDS data set {name!r} is prepared in {builder.data_dir} as "
                        f"{builder.info.file_format.value}, which has no random access; --input stream reads "
                        f"{tfds_prepare.FORMAT}: prepare it so in another directory "
                        f"({tfds_prepare.HOW.format(name=name)}) and pass --data_dir DIR, or use --input device")
    return builder


def load_tfds(name: str, split: str, data_dir: str | None, download: bool) -> ArrayDataset:
    """Reads a whole TFDS split with an `image` and a `label` feature into memory."""
    builder = _prepared(name, data_dir, download)
    direct = tfds_prepare.readable_without_tensorflow(builder)  # else a tfrecord set, which TensorFlow reads
    if not direct and not tfds_prepare.tensorflow_installed():
        raise DataError(f"TFDS data set {name!r} is prepared in {builder.data_dir} as "
                        f"{builder.info.file_format.value}, which only TensorFlow reads, and this install leaves it "
                        f"out: `pip install \"jaxrec[tfds]\"` (the CPU build), or prepare it as "
                        f"{tfds_prepare.FORMAT} in another directory ({tfds_prepare.HOW.format(name=name)}) and pass "
                        f"--data_dir DIR")
    log.info("reading TFDS %s/%s from %s (%s)", name, split, builder.data_dir,
             "data source" if direct else "TensorFlow")
    try:
        with tfds_prepare.quiet():
            chunks = list((_read_data_source if direct else _read_with_tensorflow)(builder, split))
    except (KeyError, ValueError) as err:
        raise DataError(f"TFDS data set {name!r} cannot read split {split!r} ({err}); it has "
                        f"{list(builder.info.splits) or 'no recorded splits'}") from err
    if not chunks:
        raise DataError(f"TFDS split {name}/{split} is empty")
    images, labels = (np.concatenate(part) for part in zip(*chunks))
    return ArrayDataset(images.astype(np.uint8), labels.astype(np.int32), tuple(builder.info.features["label"].names))
