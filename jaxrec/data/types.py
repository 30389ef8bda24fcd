"""Plain containers for data held in memory as arrays, and the data sets shipped in the package."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxrec.errors import InputError

# The samples shipped in the package, by the name --dataset gives them (here, not in sources: prepare reads it
# without importing JAX).
SAMPLES = {"cifar10_sample": Path(__file__).parent / "samples" / "cifar10_sample"}


class DataError(InputError):
    """A data set that cannot be found, read or used; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """One split held as arrays: images uint8 [N, H, W, C], labels int32 [N]."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def nbytes(self) -> int:
        return self.images.nbytes

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The images `indices`, uint8 [n, H, W, C]."""
        return self.images[indices]


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """A train and an eval split of one data set, plus what preprocessing needs to know."""

    name: str
    train: ArrayDataset  # or a jaxrec.data.stream.StreamedDataset: the same, read as batches need it
    eval: ArrayDataset
    mean: tuple[float, ...]  # per-channel mean of the training images, in [0, 255]
    std: tuple[float, ...]  # per-channel standard deviation, in [0, 255]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def streamed(self) -> bool:
        """Whether the splits are read as batches need them (--input stream), not held as arrays."""
        return not isinstance(self.train, ArrayDataset)

    def describe(self) -> dict:
        """What a later `predict` needs to preprocess new images the same way."""
        return {"name": self.name, "class_names": list(self.class_names), "image_shape": list(self.image_shape),
                "mean": list(self.mean), "std": list(self.std), "train_examples": len(self.train),
                "eval_examples": len(self.eval)}
