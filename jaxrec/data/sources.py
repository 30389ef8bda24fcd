"""Resolves `config.dataset` to arrays: a TFDS name, the shipped sample, or an image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxrec.config import Config
from jaxrec.data import image_folder
from jaxrec.data.types import ArrayDataset, DataError, DataSplits

SAMPLE_ROOT = Path(__file__).parent / "samples" / "cifar10_sample"
SAMPLES = {"cifar10_sample": SAMPLE_ROOT}


def _is_path(dataset: str) -> bool:
    return "/" in dataset or dataset.startswith(".") or dataset.startswith("~") or Path(dataset).exists()


def _from_folder(root: Path, config: Config) -> tuple[ArrayDataset, ArrayDataset]:
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass a folder laid out <root>/<split>/<class>/<image>, "
                        f"a TFDS name, or cifar10_sample")
    classes = image_folder.list_classes(root, config.train_split)
    eval_classes = image_folder.list_classes(root, config.eval_split)
    unknown = sorted(set(eval_classes) - set(classes))
    if unknown:
        raise DataError(f"{root}/{config.eval_split} has classes missing from {config.train_split}: {unknown}")
    first, _ = image_folder.list_images(root / config.train_split, classes)
    if not first:
        raise DataError(f"no images found under {root}/{config.train_split}/<class>/")
    size, channels = image_folder.probe(first[0])
    size = (config.image_size, config.image_size) if config.image_size else size
    channels = config.channels or channels
    train = image_folder.load_split(root, config.train_split, classes, size, channels)
    evaluation = image_folder.load_split(root, config.eval_split, classes, size, channels)
    return train, evaluation


def _resize(data: ArrayDataset, config: Config) -> ArrayDataset:
    """Applies image_size / channels to arrays that came from TFDS, as the image-folder reader does."""
    size = (config.image_size,) * 2 if config.image_size else None
    if size in (None, data.images.shape[1:3]) and config.channels in (0, data.images.shape[-1]):
        return data
    from PIL import Image

    images = np.stack([image_folder.convert(Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im), size,
                                            config.channels) for im in data.images])
    return ArrayDataset(images, data.labels, data.class_names)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 255] (float64, in chunks)."""
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype(np.float64)
        total += block.sum(axis=(0, 1, 2))
        total_sq += (block ** 2).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_data(config: Config) -> DataSplits:
    """Loads the train and eval splits named by the config into memory as uint8 arrays."""
    name = config.dataset
    if name in SAMPLES:
        train, evaluation = _from_folder(SAMPLES[name], config)
    elif _is_path(name):
        train, evaluation = _from_folder(Path(name), config)
    else:
        from jaxrec.data.tfds_source import load_tfds

        train = _resize(load_tfds(name, config.train_split, config.data_dir, config.download), config)
        evaluation = _resize(load_tfds(name, config.eval_split, config.data_dir, config.download), config)
    mean, std = channel_stats(train.images)
    return DataSplits(name=name, train=train, eval=evaluation, mean=mean, std=std)
