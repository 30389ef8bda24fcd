"""Prepares a TFDS data set once, in the array_record format that jaxrec reads without TensorFlow.

    python experiments/prepare_tfds.py cifar10 --data_dir DIR     # then: jaxrec train --data_dir DIR ...
    python experiments/prepare_tfds.py cifar10 --data_dir DIR --check   # exit 0 if it is ready to read

Preparing needs TensorFlow (TFDS encodes the images with it) and internet; training afterwards needs
neither, and neither does --check. It imports only tensorflow_datasets, not jaxrec or JAX, so it can
run in a separate environment holding TensorFlow's CPU build: the Colab/Kaggle notebook prepares
there, because installing TensorFlow on a TPU runtime breaks JAX's TPU start-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

FORMAT = "array_record"  # jaxrec.data.tfds_source.PREPARE_FORMAT (not imported: no JAX here)


class PrepareError(Exception):
    """A data set that cannot be prepared here; the message names the fix."""


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise PrepareError(f"{name!r} is not a TFDS data set name (e.g. cifar10, cifar100, mnist)") from err


def ready(name: str, data_dir: str | None) -> bool:
    """Whether `name` is prepared in `data_dir` in a format jaxrec reads without TensorFlow."""
    from tensorflow_datasets.core import file_adapters

    builder = _builder(name, data_dir)
    formats = set(builder.info.available_file_formats()) if builder.is_prepared() else set()
    return bool(formats & file_adapters.FileFormat.with_random_access())


def prepare(name: str, data_dir: str | None) -> str:
    """Downloads and prepares `name` in `data_dir` (TFDS's default when None) unless it is there;
    returns the directory the data set is in."""
    import tensorflow as tf
    from tensorflow_datasets.core.download import download_manager, extractor, util

    for kind in ("GPU", "TPU"):  # TensorFlow only encodes here: leave accelerators to JAX
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):  # already initialised, or no such device type
            pass
    builder = _builder(name, data_dir)
    if builder.is_prepared():
        if not ready(name, data_dir):
            raise PrepareError(f"{name} is prepared in {builder.data_dir} as {builder.info.file_format.value}, "
                               f"which jaxrec reads only with TensorFlow: pass another --data_dir to prepare it "
                               f"as {FORMAT}")
        print(f"{name} is already prepared in {builder.data_dir}")
        return str(builder.data_dir)
    try:
        builder.download_and_prepare(file_format=FORMAT)
    except (OSError, util.DownloadError, download_manager.NonMatchingChecksumError, extractor.ExtractError) as err:
        # Offline, TFDS retries for about 3.5 minutes before this.
        raise PrepareError(f"downloading {name} failed: {type(err).__name__}: {str(err)[:300]}") from err
    print(f"{name} prepared in {builder.data_dir} ({FORMAT})")
    return str(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a TFDS data set name, e.g. cifar10")
    parser.add_argument("--data_dir", default=None, help="where to put it (default: TFDS's, ~/tensorflow_datasets)")
    parser.add_argument("--check", action="store_true",
                        help="only say whether it is prepared as jaxrec reads it (exit 0) or not (exit 1)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            found = ready(args.name, args.data_dir)
            print(f"{args.name} is {'' if found else 'not '}prepared in {args.data_dir or 'TFDS default'} "
                  f"as jaxrec reads it")
            return 0 if found else 1
        if importlib.util.find_spec("tensorflow") is None:
            raise PrepareError("preparing a TFDS data set needs TensorFlow: pip install tensorflow-cpu "
                               "tensorflow-datasets importlib_resources (in a separate folder on a TPU runtime: "
                               "docs/install.md)")
        prepare(args.name, args.data_dir)
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
