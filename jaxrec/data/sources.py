"""Resolves `config.dataset` to arrays: a TFDS name, the shipped sample, or an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from jaxrec.config import Config
from jaxrec.data import image_folder
from jaxrec.data.types import ArrayDataset, DataError, DataSplits

SAMPLE_ROOT = Path(__file__).parent / "samples" / "cifar10_sample"
SAMPLES = {"cifar10_sample": SAMPLE_ROOT}


def _is_folder(dataset: str) -> bool:
    """The shipped sample or a path (anything else is a TFDS name)."""
    return dataset in SAMPLES or "/" in dataset or dataset.startswith((".", "~")) or Path(dataset).exists()


def _folder_root(dataset: str) -> Path:
    root = SAMPLES[dataset] if dataset in SAMPLES else Path(dataset).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass a folder laid out <root>/<split>/<class>/<image> "
                        f"(or <root>/<class>/<image>), a TFDS name, or cifar10_sample")
    return root


def _list_folder(config: Config) -> image_folder.FolderListing:
    return image_folder.list_folder(_folder_root(config.dataset), config.train_split, config.eval_split,
                                    config.test_fraction, config.min_images_per_class, config.seed)


def _check_nonempty(files: image_folder.Files, config: Config, split: str) -> None:
    if not files[0]:
        raise DataError(f"no images ({', '.join(image_folder.IMAGE_SUFFIXES)}) found in split {split!r} of "
                        f"{config.dataset} (expected <root>/{split}/<class>/<image>)")


def _from_folder(config: Config) -> tuple[ArrayDataset, ArrayDataset]:
    listing = _list_folder(config)
    _check_nonempty(listing.train, config, config.train_split)
    _check_nonempty(listing.eval, config, config.eval_split)
    size, channels = image_folder.probe(listing.train[0][0])
    size = (config.image_size, config.image_size) if config.image_size else size
    channels = config.channels or channels
    return tuple(image_folder.read_images(*files, listing.classes, size, channels)
                 for files in (listing.train, listing.eval))


def _resize(data: ArrayDataset, size: tuple[int, int] | None, channels: int) -> ArrayDataset:
    """Applies a size / channel count (None / 0: keep) to arrays that came from TFDS, as the image-folder
    reader does."""
    if size in (None, data.images.shape[1:3]) and channels in (0, data.images.shape[-1]):
        return data
    from PIL import Image

    images = np.stack([image_folder.convert(Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im), size,
                                            channels) for im in data.images])
    return ArrayDataset(images, data.labels, data.class_names)


def _config_size(config: Config) -> tuple[int, int] | None:
    return (config.image_size,) * 2 if config.image_size else None


def load_split(config: Config, split: str, class_names: Sequence[str],
               image_shape: Sequence[int]) -> ArrayDataset:
    """One split of `config.dataset`, decoded to `image_shape` (H, W, C) and labelled by `class_names`,
    e.g. a trained model's: to evaluate it on this split or on another data set with the same classes.

    An image folder without split folders gives the same seeded split as in training: `split` ==
    config.train_split is its training part, any other name its held-out part.
    """
    size, channels = (int(image_shape[0]), int(image_shape[1])), int(image_shape[2])
    if _is_folder(config.dataset):
        listing = _list_folder(config.replace(eval_split=split))
        files = listing.train if split == config.train_split else listing.eval
        _check_nonempty(files, config, split)
        data = image_folder.read_images(*files, listing.classes, size, channels)
    else:
        from jaxrec.data.tfds_source import load_tfds

        data = _resize(load_tfds(config.dataset, split, config.data_dir, config.download), size, channels)
    unknown = sorted(set(data.class_names) - set(class_names))
    if unknown:
        raise DataError(f"{config.dataset}/{split} has classes the model does not know: {unknown} (it knows "
                        f"{list(class_names)}); evaluate on a data set with the same classes")
    relabel = np.asarray([list(class_names).index(name) for name in data.class_names], np.int32)
    return ArrayDataset(data.images, relabel[data.labels], tuple(class_names))


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
    if not name:
        raise DataError("no data set given; pass --dataset (or --data) with a TFDS name, cifar10_sample, "
                        "or an image-folder path")
    if _is_folder(name):
        train, evaluation = _from_folder(config)
    else:
        from jaxrec.data.tfds_source import load_tfds

        size = _config_size(config)
        train = _resize(load_tfds(name, config.train_split, config.data_dir, config.download), size, config.channels)
        evaluation = _resize(load_tfds(name, config.eval_split, config.data_dir, config.download), size,
                             config.channels)
    mean, std = channel_stats(train.images)
    return DataSplits(name=name, train=train, eval=evaluation, mean=mean, std=std)
