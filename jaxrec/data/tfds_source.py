"""Loads a TensorFlow Datasets image classification set into uint8 arrays."""

from __future__ import annotations

import numpy as np

from jaxrec.data.types import ArrayDataset, DataError


def _keep_tensorflow_off_accelerators() -> None:
    """TF only decodes here; JAX owns the GPUs/TPUs (TF would otherwise grab their memory)."""
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass


def _ways_out(name: str, data_dir: str | None) -> str:
    return (f"Ways out: (1) prepare it where there is internet (`python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{name}').download_and_prepare()\"`) and pass --data_dir with that directory "
            f"(now: {data_dir or 'TFDS default ~/tensorflow_datasets'}); (2) pass --download to let TFDS fetch "
            f"it now (needs internet); (3) pass an image-folder path laid out <root>/<split>/<class>/<image> as "
            f"--dataset; (4) try the pipeline offline with the shipped sample: --dataset cifar10_sample.")


def load_tfds(name: str, split: str, data_dir: str | None, download: bool) -> ArrayDataset:
    """Reads a whole TFDS split with an `image` and a `label` feature into memory."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise DataError(f"unknown data set {name!r}: it is neither a TFDS name nor an existing image folder. "
                        f"Use a TFDS name (cifar10, cifar100, mnist, fashion_mnist, ...), 'cifar10_sample', or "
                        f"a path to a folder laid out <root>/<split>/<class>/<image>.") from err
    if not builder.is_prepared():
        if not download:
            raise DataError(f"TFDS data set {name!r} is not prepared in {builder.data_dir} and this run may not "
                            f"download it. " + _ways_out(name, data_dir))
        builder.download_and_prepare()
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise DataError(f"TFDS data set {name!r} has features {list(features)}; jaxrec needs 'image' and 'label'")
    _keep_tensorflow_off_accelerators()
    try:
        dataset = builder.as_dataset(split=split, as_supervised=True)
    except (KeyError, ValueError) as err:
        raise DataError(f"TFDS data set {name!r} cannot read split {split!r} ({err}); it has "
                        f"{list(builder.info.splits) or 'no recorded splits'}") from err
    # Fixed-size chunks rather than batch_size=-1, which needs the split's size in dataset_info.
    chunks = list(tfds.as_numpy(dataset.batch(4096)))
    if not chunks:
        raise DataError(f"TFDS split {name}/{split} is empty")
    images = np.concatenate([c[0] for c in chunks]).astype(np.uint8)
    labels = np.concatenate([c[1] for c in chunks]).astype(np.int32)
    names = tuple(features["label"].names)
    return ArrayDataset(images, labels, names)
