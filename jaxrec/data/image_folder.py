"""Lists an image folder, `<root>/<split>/<class>/<image>` or `<root>/<class>/<image>`, and picks its decoded shape."""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jaxrec.data import decode
from jaxrec.data.decode import IMAGE_SUFFIXES
from jaxrec.data.types import DataError

log = logging.getLogger(__name__)
PROBE_LIMIT = 5000  # file headers read to choose a data set's shape: all of a large set's would cost seconds
THREADS = min(32, os.cpu_count() or 1)  # map_in_threads' threads


def list_classes(split_dir: Path) -> list[str]:
    """Class names of a split: its sub-folders, sorted."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir} holds no class folders; expected {split_dir}/<class>/<image>")
    return classes


def list_images(split_dir: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """A split's image files and their labels (indices into `classes`); folders inside class folders are not read."""
    paths, labels, nested = [], [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
            elif path.is_dir() and not path.name.startswith("."):
                nested.append(f"{name}/{path.name}")
    if nested:
        log.warning("%s: the images in folders inside class folders are not read (%s); move them up into their "
                    "class folder to train on them", split_dir, ", ".join(nested[:5]) + (" ..." if len(nested) > 5
                                                                                          else ""))
    return paths, np.asarray(labels, np.int32)


@dataclasses.dataclass(frozen=True)
class ImageShape:
    """The size and channel count a data set is decoded to, and how each was chosen (for the log)."""

    size: tuple[int, int]  # (height, width)
    channels: int  # 1 (gray) or 3 (RGB)
    size_reason: str
    channels_reason: str
    uniform: bool = False  # every image read for this has `size` (none is resized)


def choose_shape(paths: Sequence[Path], limit: int = PROBE_LIMIT) -> ImageShape:
    """The median size and majority channel count (ties: RGB) of the images, or of `limit` spread evenly."""
    probed = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)] if len(paths) > limit else paths
    probes = map_in_threads(decode.probe, probed)
    heights = sorted(size[0] for size, _ in probes)
    widths = sorted(size[1] for size, _ in probes)
    size = (heights[len(heights) // 2], widths[len(widths) // 2])
    gray = sum(is_gray for _, is_gray in probes)
    channels = 1 if 2 * gray > len(probes) else 3
    resized = sum(s != size for s, _ in probes)
    converted = gray if channels == 3 else len(probes) - gray
    counted = f"{len(probes)} training images" + (f" (of {len(paths)}, spread evenly)" if len(paths) > limit else "")
    return ImageShape(size, channels, f"the median size of {counted}: {resized} of them resized",
                      f"{'gray' if channels == 1 else 'RGB'} as most of them are ({converted} converted)",
                      uniform=resized == 0)


def map_in_threads(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """function over items (paths, indices) in threads, one per core: Pillow releases the GIL while it
    decodes, but more threads than cores only contend for it (results/streaming_speed.md)."""
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(function, items, chunksize=256))


Files = tuple[list[Path], np.ndarray]  # image paths and their labels


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """The files of an image folder's train and eval splits, after small classes were dropped."""

    classes: tuple[str, ...]
    train: Files
    eval: Files


def stratified_split(paths: Sequence[Path], labels: np.ndarray, classes: Sequence[str], test_fraction: float,
                     seed: int) -> tuple[Files, Files]:
    """Each class's n images (n >= 2: list_folder drops smaller classes) split into train and test, round(n *
    test_fraction) (1 to n - 1) to test, shuffled with (seed, crc32 of the class name): a class's split stays as it
    is when other classes are added or dropped."""
    train_idx, test_idx = [], []
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(members)
        n_test = min(max(int(round(len(members) * test_fraction)), 1), len(members) - 1)
        test_idx.extend(order[:n_test])
        train_idx.extend(order[n_test:])
    return _subset(paths, labels, train_idx), _subset(paths, labels, test_idx)


def _subset(paths: Sequence[Path], labels: np.ndarray, indices: Sequence[int]) -> Files:
    indices = np.sort(np.asarray(indices, np.int64))
    return [paths[i] for i in indices], labels[indices]


def _drop_small_classes(classes: Sequence[str], files: Files, min_images: int, where: str,
                        least: int = 1) -> tuple[list[str], Files]:
    """The classes with at least `min_images` images, and their files; `least`: the images every class needs."""
    counts = np.bincount(files[1], minlength=len(classes))
    keep = counts >= min_images
    kept = [name for name, enough in zip(classes, keep) if enough]
    dropped = [f"{name} ({count})" for name, count, enough in zip(classes, counts, keep) if not enough]
    if dropped:
        log.warning("dropped %d of %d classes with fewer than %d images in %s: %s", len(dropped), len(classes),
                    min_images, where, ", ".join(dropped))
    if len(kept) < 2:
        # Lowering the flag helps only where 2 classes have the images every class needs.
        each = f" of at least {least} images (one is held out for evaluation)" if least > 1 else ""
        fix = ("lower --min_images_per_class or add images" if sum(counts >= least) >= 2 else
               f"training needs at least 2 classes{each}: add images")
        raise DataError(f"{where}: only {len(kept)} class(es) have at least {min_images} images (of {len(classes)}); "
                        f"{fix}")
    chosen = keep[files[1]]
    relabel = np.cumsum(keep, dtype=np.int32) - 1  # a kept class's index among the kept
    return kept, ([path for path, mine in zip(files[0], chosen) if mine], relabel[files[1][chosen]])


def list_folder(root: Path, train_split: str, eval_split: str, test_fraction: float = 0.2,
                min_images_per_class: int = 1, seed: int = 0) -> FolderListing:
    """Lists <root>/<split>/<class>/<image>, or <root>/<class>/<image> with the eval split `stratified_split` draws;
    classes with fewer than `min_images_per_class` images (in train, or in all) are dropped."""
    if (root / train_split).is_dir():
        classes = list_classes(root / train_split)
        if not (root / eval_split).is_dir():  # name the splits there are to pass instead
            found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            others = [name for name in found if name != train_split]
            fix = ("pass " + " or ".join(f"--eval_split {name}" for name in others) if others else
                   f"expected the layout <root>/<split>/<class>/<image>, e.g. {root}/{eval_split}/cat/0001.jpg")
            raise DataError(f"image folder {root} has no split {eval_split!r} (found: {found}); {fix}")
        unknown = sorted(set(list_classes(root / eval_split)) - set(classes))
        if unknown:
            raise DataError(f"{root}/{eval_split} has classes missing from {train_split}: {unknown}; add their "
                            f"training images to {root}/{train_split}/<class>/, or remove their folders from "
                            f"{root}/{eval_split}")
        classes, train = _drop_small_classes(classes, list_images(root / train_split, classes), min_images_per_class,
                                             str(root / train_split))
        return FolderListing(tuple(classes), train, list_images(root / eval_split, classes))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = list_images(root, classes)
    if not files[0]:
        raise DataError(f"image folder {root} has no split {train_split!r} and no class folders with images; "
                        f"expected <root>/<split>/<class>/<image> or <root>/<class>/<image> (one folder per class)")
    classes, (paths, labels) = _drop_small_classes(classes, files, max(min_images_per_class, 2), str(root), least=2)
    train, test = stratified_split(paths, labels, classes, test_fraction, seed)
    log.info("%s has no %s/%s folders: holding out %d of %d images (%.0f%% of each class, seed %d) for evaluation",
             root, train_split, eval_split, len(test[0]), len(paths), 100 * test_fraction, seed)
    return FolderListing(tuple(classes), train, test)
