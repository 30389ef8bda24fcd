"""TFDS data sets: prepared as array_record (experiments/prepare_tfds.py), read and trained on with
TensorFlow absent; a tfrecord-prepared one reads the same arrays through TensorFlow; without
TensorFlow, what needs it is refused in one line naming the `tfds` extra."""

import subprocess
import sys

import numpy as np
import requests
import pytest
import tensorflow_datasets as tfds

from helpers import ROOT, SMALL_FLAGS, load_script
from jaxrec.data import DataError
from jaxrec.data.tfds_source import load_tfds

NAME = "jaxrec_test_images"


class JaxrecTestImages(tfds.core.GeneratorBasedBuilder):
    """A tiny image classification set prepared from random bytes (TFDS registers it by its name)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(8, 8, 3)),
                                                 "label": tfds.features.ClassLabel(names=["ant", "bee", "cow"])}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(48, 0), "test": self._generate_examples(24, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for index in range(count):
            yield index, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": index % 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The set prepared as jaxrec prepares (array_record) and, elsewhere, in TFDS's tfrecord default."""
    array_record = tmp_path_factory.mktemp("array_record")
    load_script("prepare_tfds").prepare(NAME, str(array_record))
    tfrecord = tmp_path_factory.mktemp("tfrecord")
    tfds.builder(NAME, data_dir=str(tfrecord)).download_and_prepare(file_format="tfrecord")
    return array_record, tfrecord


def _without_tensorflow(*args):
    return subprocess.run([sys.executable, str(ROOT / "tests" / "without_tensorflow.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_both_formats_read_the_same_arrays(prepared):
    array_record, tfrecord = prepared
    first, second = (load_tfds(NAME, "train", str(where), download=False) for where in prepared)
    assert first.images.shape == (48, 8, 8, 3) and first.class_names == ("ant", "bee", "cow")
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert sorted(np.bincount(first.labels)) == [16, 16, 16]


def test_training_on_an_array_record_set_needs_no_tensorflow(prepared, tmp_path):
    result = _without_tensorflow("jaxrec", "train", "--dataset", NAME, "--data_dir", prepared[0], "--epochs", 1,
                                 "--batch_size", 16, "--workdir", tmp_path / "run", "--progress", "false",
                                 *SMALL_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").exists()


def test_without_tensorflow_a_tfrecord_set_or_preparing_is_refused_in_one_line(prepared, tmp_path):
    tfrecord = _without_tensorflow("jaxrec", "train", "--dataset", NAME, "--data_dir", prepared[1])
    assert tfrecord.returncode == 2 and tfrecord.stderr.count("\n") == 1, tfrecord.stderr[-3000:]
    assert "tfrecord" in tfrecord.stderr and "jaxrec[tfds]" in tfrecord.stderr
    unprepared = _without_tensorflow("jaxrec", "train", "--dataset", "mnist", "--data_dir", tmp_path, "--download")
    assert unprepared.returncode == 2 and unprepared.stderr.count("\n") == 1, unprepared.stderr[-3000:]
    assert "needs TensorFlow" in unprepared.stderr and "prepare_tfds.py mnist" in unprepared.stderr
    script = _without_tensorflow(ROOT / "experiments" / "prepare_tfds.py", "mnist", "--data_dir", tmp_path)
    assert script.returncode == 2 and script.stderr.count("\n") == 1, script.stderr[-3000:]
    assert "needs TensorFlow" in script.stderr


def test_the_tfds_extra_prepares_tfds_own_data_sets(tmp_path):
    # TFDS reads a registered builder's code path (checksums) before downloading, with a package it
    # does not declare (tensorflow/datasets#11212): the tfds extra must bring it.
    assert tfds.builder("cifar10", data_dir=str(tmp_path)).code_path.name == "cifar.py"


def test_a_failed_download_is_one_line_naming_the_fixes(tmp_path, monkeypatch):
    def offline(self, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(DataError, match=r"downloading TFDS data set 'mnist' failed \(ConnectionError: .*"
                                        r"internet connection.*prepare_tfds.py mnist --data_dir DIR"):
        load_tfds("mnist", "train", str(tmp_path), download=True)
