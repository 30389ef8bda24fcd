"""Reads an image folder laid out `<root>/<split>/<class>/<image>` into uint8 arrays."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxrec.data.types import ArrayDataset, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm", ".tif",
                  ".tiff", ".webp")
GRAY_MODES = ("L", "1", "I;16", "I")  # Pillow modes that carry one channel


def convert(image: Image.Image, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """A Pillow image as uint8 [height, width, channels]: converted to 1 (L) or 3 (RGB) channels and
    resized (bilinear) when asked; by default grayscale stays grayscale and the rest becomes RGB."""
    if not channels:
        channels = 1 if image.mode in GRAY_MODES else 3
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def list_classes(root: Path, split: str) -> list[str]:
    """Class names of a split: its sub-folders, sorted."""
    split_dir = root / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataError(f"image folder {root} has no split {split!r} (found: {found or 'nothing'}); "
                        f"expected the layout <root>/<split>/<class>/<image>, e.g. {root}/{split}/cat/0001.jpg")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} holds no class folders; expected {split_dir}/<class>/<image>")
    return classes


def list_images(split_dir: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """All image files of a split with their integer labels (index into `classes`)."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
    return paths, np.asarray(labels, np.int32)


def read_image(path: Path, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Decodes one image to uint8 [height, width, channels], resized and channel-converted if asked.

    Raises DataError naming the file when it cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return convert(image, size, channels)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}. Remove the file or replace it with a valid "
                        f"image ({', '.join(IMAGE_SUFFIXES)}).") from err


def probe(path: Path) -> tuple[tuple[int, int], int]:
    """(height, width) and channel count (1 for grayscale, else 3) of an image, without decoding it all."""
    try:
        with Image.open(path) as image:
            return (image.size[1], image.size[0]), 1 if image.mode in GRAY_MODES else 3
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {path}: {err}. Remove the file or replace it with a valid image.") from err


def load_split(root: Path, split: str, classes: Sequence[str], size: tuple[int, int],
               channels: int) -> ArrayDataset:
    """Decodes every image of a split (threads; PIL releases the GIL while decoding)."""
    split_dir = root / split
    paths, labels = list_images(split_dir, classes)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {split_dir}/<class>/")
    workers = min(32, (os.cpu_count() or 1) * 4)
    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(lambda p: read_image(p, size, channels), paths, chunksize=256))
    return ArrayDataset(np.stack(images), labels, tuple(classes))
