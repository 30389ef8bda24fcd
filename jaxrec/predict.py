"""Classifies new images with a saved run's checkpoint: top-k class names and probabilities per image.

    python -m jaxrec.predict --workdir runs/cnn_cifar10-jpeg_seed0 photo.jpg more_photos/
    python -m jaxrec.predict --workdir DIR --top_k 3 --json new_faces/ > predictions.json

Each image gets exactly the training preprocessing: decoded by Pillow, converted to the model's
channel count and resized to its input size (jaxrec.data.image_folder.convert, as for training
folders), then normalised with the training mean/std saved in the workdir. Folders are searched
recursively for image files (by suffix). A file that is missing or not an image is reported on its
own line (or as an "error" entry in --json) and the others are still classified; the exit code is
1 if any file failed, 2 for bad input such as a workdir without a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from jaxrec.checkpointing import Trained, load_trained
from jaxrec.cli import exit_code, setup_logging
from jaxrec.data.image_folder import IMAGE_SUFFIXES, read_image
from jaxrec.data.pipeline import Preprocess
from jaxrec.errors import InputError
from jaxrec.state import inference_state


def expand(inputs: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """Files to classify, each with an error message or None: folders become their image files
    (recursively, sorted); a missing path or an empty folder becomes an error entry."""
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
        self.class_names = list(trained.dataset["class_names"])
        self.image_shape = tuple(int(d) for d in trained.dataset["image_shape"])
        self.batch_size = batch_size
        state = inference_state(trained.model(), trained.params)
        preprocess = Preprocess(mean=tuple(trained.dataset["mean"]), std=tuple(trained.dataset["std"]))
        self.params = state.params
        self._logits = jax.jit(lambda params, images: state.apply_fn({"params": params}, preprocess.eval(images)))

    def read(self, path: Path) -> np.ndarray:
        """One file as the model's uint8 input [H, W, C]; raises DataError naming the file."""
        return read_image(path, self.image_shape[:2], self.image_shape[2])

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits [N, classes] of uint8 images [N, H, W, C], in fixed-size batches (one compilation)."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.zeros((self.batch_size, *self.image_shape), np.uint8)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._logits(self.params, padded))[:len(chunk)])
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
        """One entry per file: {'path', 'top_k': [{'class', 'probability'}, ...]} or {'path', 'error'}."""
        entries, images, readable = [], [], []
        for path, error in expand(inputs):
            if error is None:
                try:
                    images.append(self.read(path))
                    readable.append(len(entries))
                except InputError as err:
                    error = str(err)
            entries.append({"path": str(path)} if error is None else {"path": str(path), "error": error})
        batch = np.stack(images) if images else np.zeros((0, *self.image_shape), np.uint8)
        for index, top in zip(readable, self.top_k(self.logits(batch), k)):
            entries[index]["top_k"] = top
        return entries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxrec.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders")
    parser.add_argument("--workdir", required=True, help="the training run's output directory")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="checkpoint: best test accuracy, or the latest (default: best)")
    parser.add_argument("--top_k", type=int, default=5, help="classes to show per image (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text lines")
    parser.add_argument("--batch_size", type=int, default=256, help="images per device call (default: 256)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()

    def run() -> int:
        entries = Predictor(load_trained(args.workdir, args.which), args.batch_size).predict(args.inputs, args.top_k)
        if args.json:
            print(json.dumps(entries, indent=2))
        for entry in entries:
            if "error" in entry:
                print(f"{entry['path']}: error: {entry['error']}", file=sys.stderr)
            elif not args.json:
                print(f"{entry['path']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in entry["top_k"]))
        failed = sum("error" in entry for entry in entries)
        if failed:
            print(f"{failed} of {len(entries)} file(s) could not be classified", file=sys.stderr)
        return 1 if failed else 0

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
