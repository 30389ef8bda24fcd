"""Prepares a TFDS data set once, in the array_record format that jaxrec reads without TensorFlow.

    python experiments/prepare_tfds.py cifar10 --data_dir DIR     # then: jaxrec train --data_dir DIR ...

Preparing needs TensorFlow (TFDS encodes the images with it) and internet; training afterwards needs
neither. It imports only tensorflow_datasets, not jaxrec or JAX, so it can run in a separate
environment holding TensorFlow's CPU build: the Colab/Kaggle notebook prepares there, because
installing TensorFlow on a TPU runtime breaks JAX's TPU start-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

FORMAT = "array_record"  # jaxrec.data.tfds_source.PREPARE_FORMAT (not imported: no JAX here)


def prepare(name: str, data_dir: str | None) -> str:
    """Downloads and prepares `name` in `data_dir` (TFDS's default when None) unless it is there;
    returns the directory the data set is in."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    for kind in ("GPU", "TPU"):  # TensorFlow only encodes here: leave accelerators to JAX
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        print(f"{name} is already prepared in {builder.data_dir} ({builder.info.file_format.value})")
    else:
        builder.download_and_prepare(file_format=FORMAT)
        print(f"{name} prepared in {builder.data_dir} ({FORMAT})")
    return str(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a TFDS data set name, e.g. cifar10")
    parser.add_argument("--data_dir", default=None, help="where to put it (default: TFDS's, ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("tensorflow") is None:
        print("error: preparing a TFDS data set needs TensorFlow: pip install tensorflow-cpu tensorflow-datasets "
              "importlib_resources (in a separate folder on a TPU runtime: docs/install.md)", file=sys.stderr)
        return 2
    try:
        prepare(args.name, args.data_dir)
    except OSError as err:  # offline: TFDS retries for a few minutes before this
        print(f"error: downloading {args.name} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
