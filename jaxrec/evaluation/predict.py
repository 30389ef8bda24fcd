"""Classifies new images with a saved run's checkpoint (the library behind `jaxrec predict`), each with exactly the
training preprocessing: decoded and resized as training folders are, normalised with the saved training mean/std."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from jaxrec.data.decode import IMAGE_SUFFIXES, read_image
from jaxrec.errors import InputError
from jaxrec.run.checkpoints import Trained


def expand(inputs: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """Files to classify, each with an error message or None: folders become their image files (recursively, sorted,
    hidden ones skipped); a missing path or an empty folder becomes an error entry."""
    found: list[tuple[Path, str | None]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not any(part.startswith(".") for part in p.relative_to(item).parts))
            found += [(p, None) for p in images] or [(item, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in "
                                                            f"this folder")]
        elif item.is_file():
            found.append((item, None))
        else:
            found.append((item, "no such file or folder"))
    return found


class Predictor:
    """A trained model with its preprocessing: uint8 images in, class probabilities out."""

    def __init__(self, trained: Trained, batch_size: int = 256):
        self.class_names = trained.class_names
        self.image_shape = trained.image_shape
        self.resize = trained.config.resize  # new images are brought to the model's size as its training images were
        self.batch_size = batch_size
        self.variables = trained.variables
        apply_fn, preprocess = trained.apply_fn(), trained.preprocess()  # with the run's test-time augmentation
        self._logits = jax.jit(lambda variables, images: apply_fn(variables, preprocess.eval(images), train=False))

    def read(self, path: Path) -> tuple[np.ndarray, list[str]]:
        """One file as the model's uint8 input [H, W, C] and what decoding changed (e.g. transparency
        composited on white); raises DataError naming the file."""
        return read_image(path, self.image_shape[:2], self.image_shape[2], self.resize)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits [N, classes] of uint8 images [N, H, W, C], in fixed-size batches (one compilation)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.zeros((self.batch_size, *self.image_shape), np.uint8)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._logits(self.variables, padded))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def top_k(self, logits: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """Per image, the k most likely classes with their softmax probabilities, most likely first
        (ties go to the lower class index, as in argmax and the eval step)."""
        k = max(1, min(k, len(self.class_names)))
        probs = np.asarray(jax.nn.softmax(logits.astype(np.float64), axis=-1))
        order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
        return [[{"class": self.class_names[c], "probability": float(p[c])} for c in row]
                for row, p in zip(order, probs)]

    def predict(self, inputs: Sequence[str | Path], k: int = 5) -> list[dict[str, Any]]:
        """One entry per file: {'path', 'top_k': [{'class', 'probability'}, ...], 'decoded'?} or
        {'path', 'error'}; 'decoded' lists what decoding changed, when it changed something."""
        entries, images, readable = [], [], []
        for path, error in expand(inputs):
            entry: dict[str, Any] = {"path": str(path)}
            if error is None:
                try:
                    image, notes = self.read(path)
                    images.append(image)
                    readable.append(len(entries))
                    if notes:
                        entry["decoded"] = notes
                except InputError as err:
                    error = str(err)
            entries.append(entry if error is None else {"path": str(path), "error": error})
        batch = np.stack(images) if images else np.zeros((0, *self.image_shape), np.uint8)
        for index, top in zip(readable, self.top_k(self.logits(batch), k)):
            entries[index]["top_k"] = top
        return entries

