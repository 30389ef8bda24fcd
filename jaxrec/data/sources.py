"""Resolves a run's data plan (`Config.data_plan`) to arrays: a TFDS name, the shipped sample, or an image folder."""

from __future__ import annotations

import collections
import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from jaxrec.config import DataPlan, is_folder_path
from jaxrec.data import image_folder
from jaxrec.data.decode import IMAGE_SUFFIXES, convert, read_image
from jaxrec.data.stream import FolderReader, StreamedDataset, TfdsReader
from jaxrec.data.types import SAMPLES, ArrayDataset, DataError, DataSplits
from jaxrec.errors import InputError
from jaxrec.runtime import memory

SAMPLE_ROOT = SAMPLES["cifar10_sample"]

log = logging.getLogger(__name__)
RESIZE_NOTES = {"stretch": "images of another size are stretched to it (pass --resize crop to keep their aspect "
                           "ratio and centre-crop)",
                "crop": "images of another size are scaled to cover it and centre-cropped (--resize crop)"}


def is_image_folder(dataset: str) -> bool:
    """The shipped sample or a path (anything else is a TFDS name)."""
    return dataset in SAMPLES or is_folder_path(dataset) or Path(dataset).exists()


def _folder_root(dataset: str) -> Path:
    root = SAMPLES[dataset] if dataset in SAMPLES else Path(dataset).expanduser()
    if not root.is_dir():
        what = f"{root} is a file, not an image folder" if root.exists() else f"image folder {root} does not exist"
        raise DataError(f"{what}; pass a folder laid out <root>/<split>/<class>/<image> (or <root>/<class>/<image>), "
                        f"a TFDS name, or cifar10_sample")
    return root


def _list_folder(plan: DataPlan) -> image_folder.FolderListing:
    return image_folder.list_folder(_folder_root(plan.dataset), plan.train_split, plan.eval_split,
                                    plan.test_fraction, plan.min_images_per_class, plan.split_seed)


def dataset_location(dataset: str) -> str:
    """Where a --dataset value points: a folder's absolute path (so ~/x and /home/me/x agree), else its name."""
    if dataset in SAMPLES or not is_image_folder(dataset):
        return dataset
    return str(Path(dataset).expanduser().resolve())


def split_is_seeded(plan: DataPlan) -> bool:
    """Whether the eval split is drawn with the split seed: an image folder without split folders."""
    return is_image_folder(plan.dataset) and not (_folder_root(plan.dataset) / plan.train_split).is_dir()


def reads_under(plan: DataPlan, folder: str | Path) -> bool:
    """Whether the data set would read files under `folder`: a folder inside its class or split folders."""
    if not is_image_folder(plan.dataset):
        return False
    try:
        root, folder = _folder_root(plan.dataset).resolve(), Path(folder).expanduser().resolve()
    except DataError:  # no such folder: the data set's own line says so
        return False
    read = [root / plan.train_split, root / plan.eval_split] if (root / plan.train_split).is_dir() else [root]
    return any(folder == top or top in folder.parents for top in read)


def _check_nonempty(paths: Sequence[Path], plan: DataPlan, split: str) -> None:
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in split {split!r} of "
                        f"{plan.dataset} (expected <root>/{split}/<class>/<image>)")


def _load_tfds(plan: DataPlan, split: str, size: tuple[int, int] | None, channels: int) -> ArrayDataset:
    """A TFDS split in memory, at a size / channel count (None / 0: keep) as the image-folder reader decodes."""
    from jaxrec.data.tfds_source import load_tfds  # TFDS takes seconds to import: only for TFDS sets

    data = load_tfds(plan.dataset, split, plan.data_dir, plan.download)
    if size in (None, data.images.shape[1:3]) and channels in (0, data.images.shape[-1]):
        return data
    size = size or data.images.shape[1:3]
    channels = channels or data.images.shape[-1]
    memory.check_images_fit(len(data.images), size, channels, "--image_size")
    images = np.empty((len(data.images), *size, channels), np.uint8)
    for index, image in enumerate(data.images):
        images[index] = convert(image, size, channels, plan.resize)[0]
    return ArrayDataset(images, data.labels, data.class_names)


def _given_size(plan: DataPlan) -> tuple[int, int] | None:
    return (plan.image_size,) * 2 if plan.image_size else None


def _to_model_labels(labels: np.ndarray, classes: Sequence[str], class_names: Sequence[str],
                     where: str) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, labels as indices into `class_names`) for labels over `classes`. Examples of classes the model
    does not know (e.g. dropped by --min_images_per_class) are left out with a warning; none left is a DataError."""
    mapping = np.asarray([list(class_names).index(c) if c in class_names else -1 for c in classes], np.int32)
    new = mapping[labels] if len(labels) else np.zeros(0, np.int32)
    keep = new >= 0
    unknown = sorted({classes[i] for i in np.unique(labels[~keep])}) if len(labels) else []
    if unknown:
        log.warning("%s: leaving out %d images of classes the model does not know: %s", where,
                    int((~keep).sum()), ", ".join(unknown))
    if len(labels) and not keep.any():
        raise DataError(f"{where} has none of the model's classes ({list(class_names)}); found {unknown}. "
                        f"Evaluate on a data set with the same classes")
    return keep, new[keep]


def load_tfds_split(plan: DataPlan, split: str, class_names: Sequence[str],
                    image_shape: Sequence[int]) -> ArrayDataset:
    """One split of the TFDS set `plan.dataset` (only it needs to exist), decoded to `image_shape` (H, W, C) and
    labelled by `class_names`, e.g. a trained model's; images of other classes are left out."""
    data = _load_tfds(plan, split, (int(image_shape[0]), int(image_shape[1])), int(image_shape[2]))
    keep, labels = _to_model_labels(data.labels, data.class_names, class_names, f"{plan.dataset}/{split}")
    return ArrayDataset(data.images[keep], labels, tuple(class_names))


def stream_split(plan: DataPlan, split: str, class_names: Sequence[str],
                 image_shape: Sequence[int]) -> StreamedDataset:
    """`load_tfds_split` for an image folder, listed but not decoded; a folder without split folders gives
    training's seeded split (its training part for plan.train_split, its held-out part for any other)."""
    if not is_image_folder(plan.dataset):
        raise DataError(f"{plan.dataset}: a TFDS data set is evaluated in memory; pass --input device")
    root = _folder_root(plan.dataset)
    if (root / split).is_dir():
        classes = image_folder.list_classes(root / split)
        paths, labels = image_folder.list_images(root / split, classes)
    else:
        listing = _list_folder(dataclasses.replace(plan, eval_split=split))
        classes = listing.classes
        paths, labels = listing.train if split == plan.train_split else listing.eval
    keep, labels = _to_model_labels(labels, classes, class_names, f"{plan.dataset}/{split}")
    paths = [p for p, k in zip(paths, keep) if k]
    _check_nonempty(paths, plan, split)
    return _listed(paths, labels, class_names, image_shape, plan.resize)


def streams(plan: DataPlan, problem: str | None) -> bool:
    """Whether train and evaluate stream (docs/images.md, Streaming); `problem`: why memory cannot hold the data, or
    None. With auto, any process's problem streams them all, so that the processes of a run agree."""
    if plan.input == "stream":
        return True
    if problem is not None and plan.input == "device":
        raise InputError(f"{problem}; or pass --input stream to read the data as batches need it")
    from jaxrec.runtime import distributed  # noqa: PLC0415 - JAX: listing a data set does not need it

    return plan.input == "auto" and bool(distributed.max_over_processes(int(problem is not None)))


STATS_LIMIT = 50_000  # training images the channel statistics read: all of CIFAR-10's, a spread of larger sets
STATS_CHUNK = 4096  # images per chunk, fewer where 4096 would be more than STATS_CHUNK_BYTES
STATS_CHUNK_BYTES = 64 << 20  # a chunk's uint8 pixels: what the statistics pass holds, beside one image
STATS_PIXELS = 1 << 16  # pixels widened to int64 at a time: the pass's other memory (1.5 MiB for RGB)


def stats_indices(count: int) -> np.ndarray:
    """The training images the channel statistics read: all of them, or STATS_LIMIT spread evenly over
    a larger set (both input paths read the same ones, so they normalise alike)."""
    if count <= STATS_LIMIT:
        return np.arange(count)
    return np.linspace(0, count - 1, STATS_LIMIT).astype(np.int64)


def stats_chunk(image_shape: Sequence[int]) -> int:
    """Images the statistics pass decodes at a time: at least one, else at most STATS_CHUNK_BYTES of them."""
    return max(1, min(STATS_CHUNK, STATS_CHUNK_BYTES // int(np.prod(image_shape))))


def stats_bytes(image_shape: Sequence[int], count: int, threads: int = 0) -> int:
    """Host memory of the channel-statistics pass over `count` images: one chunk of decoded images, the pixels it
    widens at a time, and each decoding thread's source and resized image (default threads: image_folder's)."""
    image, chunk = int(np.prod(image_shape)), min(stats_chunk(image_shape), len(stats_indices(count)))
    threads = threads or image_folder.THREADS
    widened = min(STATS_PIXELS, chunk * image // int(image_shape[-1])) * int(image_shape[-1])
    return chunk * image + 2 * 8 * widened + 2 * threads * image


def channel_stats(train: ArrayDataset | StreamedDataset,
                  progress: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the `stats_indices` training images, in [0, 255], from exact integer
    sums: a split in memory and streamed give the same bits. `progress`: a bar (a big streamed split takes minutes)."""
    chosen = stats_indices(len(train))
    chunk = stats_chunk(train.image_shape)
    channels = train.image_shape[-1]
    total, total_sq = [0] * channels, [0] * channels
    bar = tqdm(total=len(chosen), unit="img", unit_scale=True, desc="channel statistics", disable=not progress,
               leave=False)
    for start in range(0, len(chosen), chunk):
        block = train.take(chosen[start:start + chunk])
        pixels = block.reshape(-1, channels)
        for first in range(0, len(pixels), STATS_PIXELS):  # exact sums, widening STATS_PIXELS pixels at a time
            part = pixels[first:first + STATS_PIXELS].astype(np.int64)
            total = [t + int(s) for t, s in zip(total, part.sum(axis=0))]
            total_sq = [t + int(s) for t, s in zip(total_sq, np.einsum("pc,pc->c", part, part))]
        bar.update(len(block))
    bar.close()
    count = len(chosen) * int(np.prod(train.image_shape[:2]))  # pixels per channel
    mean = np.asarray([t / count for t in total])  # int / int: the correctly rounded float
    std = np.sqrt(np.maximum(np.asarray([t / count for t in total_sq]) - mean ** 2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_data(plan: DataPlan, listed: tuple[StreamedDataset, StreamedDataset] | None = None) -> DataSplits:
    """The train and eval splits of the plan in memory as uint8 arrays. `listed`: the same splits from
    `stream_splits`, whose files and shape an image folder then decodes without listing and probing them again."""
    name = plan.dataset
    if is_image_folder(name):
        train, evaluation = listed or _streamed_folder(plan)
        memory.check_images_fit(len(train) + len(evaluation), train.image_shape[:2], train.image_shape[2],
                                "--image_size" if plan.image_size else "the training images' median size")
        train, evaluation = decode_listed(train), decode_listed(evaluation)
    else:
        train, evaluation = (_load_tfds(plan, split, _given_size(plan), plan.channels)
                             for split in (plan.train_split, plan.eval_split))
    mean, std = channel_stats(train)
    return DataSplits(name=name, train=train, eval=evaluation, mean=mean, std=std)


def decode_listed(split: StreamedDataset) -> ArrayDataset:
    """An image folder's split listed by `stream_splits` or `stream_split`, decoded in threads; notes logged once."""
    reader, images = split.reader, np.empty((len(split), *split.image_shape), np.uint8)

    def read(index: int) -> list[str]:
        images[index], notes = read_image(Path(reader.paths[index]), reader.size, reader.channels, reader.resize)
        return notes

    counts = collections.Counter(note for notes in image_folder.map_in_threads(read, range(len(split)))
                                 for note in notes)
    if counts:
        log.info("decoding %s as a viewer shows it: %s", Path(reader.paths[0]).parent.parent,
                 "; ".join(f"{n} image(s) {note}" for note, n in sorted(counts.items())))
    return ArrayDataset(images, reader.labels, split.class_names)


def _streamed_folder(plan: DataPlan) -> tuple[StreamedDataset, StreamedDataset]:
    listing = _list_folder(plan)
    _check_nonempty(listing.eval[0], plan, plan.eval_split)  # training's: list_folder keeps 2+ classes of images
    # --image_size and --channels where given, the rest from the training images; logged.
    found = image_folder.choose_shape(listing.train[0]) if not (plan.image_size and plan.channels) else None
    size, channels = _given_size(plan) or found.size, plan.channels or found.channels
    uniform = found is not None and found.uniform and found.size == size
    log.info("decoding images to %dx%dx%d: size from %s, channels: %s%s", *size, channels,
             "--image_size" if plan.image_size else found.size_reason,
             "--channels" if plan.channels else found.channels_reason,
             "" if uniform else "; " + RESIZE_NOTES[plan.resize])
    return tuple(_listed(paths, labels, listing.classes, (*size, channels), plan.resize)
                 for paths, labels in (listing.train, listing.eval))


def _listed(paths: Sequence[Path], labels: np.ndarray, classes: Sequence[str], image_shape: Sequence[int],
            resize: str) -> StreamedDataset:
    """A split of an image folder's files, to be decoded to image_shape (H, W, C)."""
    height, width, channels = (int(d) for d in image_shape)
    reader = FolderReader(tuple(map(str, paths)), np.asarray(labels, np.int32), (height, width), channels, resize)
    return StreamedDataset(reader, tuple(classes), (height, width, channels))


def _streamed_tfds(plan: DataPlan) -> tuple[StreamedDataset, StreamedDataset]:
    from jaxrec.data.tfds_source import check_prepared_for_stream  # TFDS takes seconds to import

    builder = check_prepared_for_stream(plan.dataset, plan.data_dir, plan.download)
    stored = tuple(builder.info.features["image"].shape)
    size = _given_size(plan) or tuple(stored[:2])
    channels = plan.channels or stored[-1]
    names = tuple(builder.info.features["label"].names)
    splits = []
    for split in (plan.train_split, plan.eval_split):
        if split not in builder.info.splits:
            raise DataError(f"TFDS data set {plan.dataset!r} has no split {split!r}; it has "
                            f"{list(builder.info.splits)}")
        count = builder.info.splits[split].num_examples
        reader = TfdsReader(plan.dataset, split, plan.data_dir, size, channels, count, plan.resize)
        splits.append(StreamedDataset(reader, names, (*size, channels)))
    return tuple(splits)


def stream_splits(plan: DataPlan) -> tuple[StreamedDataset, StreamedDataset]:
    """The train and eval splits of the plan, listed and measured but not decoded: what `--input auto`
    weighs and `--input stream` reads."""
    if plan.test_fraction != DataPlan.test_fraction and not split_is_seeded(plan):  # it would be recorded unused
        raise InputError(f"--test_fraction {plan.test_fraction} with --dataset {plan.dataset}: the data set has "
                         f"its own {plan.eval_split} split, so nothing is held out here; drop --test_fraction")
    refuse_tfds_flags(plan)  # they would be recorded unused too
    return (_streamed_folder if is_image_folder(plan.dataset) else _streamed_tfds)(plan)


def refuse_tfds_flags(plan: DataPlan) -> None:
    """Raises InputError when the plan sets --download or --data_dir for an image folder, which TFDS does not read."""
    tfds_flags = [flag for flag, given in (("--download", plan.download), ("--data_dir", plan.data_dir)) if given]
    if tfds_flags and is_image_folder(plan.dataset):
        raise InputError(f"{' and '.join(tfds_flags)} with --dataset {plan.dataset}: an image folder, which TFDS "
                         f"does not read; drop {' and '.join(tfds_flags)}")


def stream_data(plan: DataPlan, splits: tuple[StreamedDataset, StreamedDataset] | None = None,
                progress: bool = False) -> DataSplits:
    """The train and eval splits of the plan (`splits`, if already listed), read as batches need them;
    the channel statistics decode the `stats_indices` images once."""
    train, evaluation = splits or stream_splits(plan)
    log.info("streaming %s: %d train / %d eval images, %s decoded; channel statistics from %d training images",
             plan.dataset, len(train), len(evaluation), memory.human(train.nbytes + evaluation.nbytes),
             len(stats_indices(len(train))))
    mean, std = channel_stats(train, progress)
    return DataSplits(name=plan.dataset, train=train, eval=evaluation, mean=mean, std=std)
