"""TFDS data sets: prepared as array_record (`jaxrec prepare`), read and trained on with
TensorFlow absent; a tfrecord-prepared one reads the same arrays through TensorFlow; without
TensorFlow, what needs it is refused in one line naming the `tfds` extra."""

import importlib.metadata
import subprocess
import sys

import numpy as np
import requests
import pytest
import tensorflow_datasets as tfds

from helpers import ROOT, SMALL_FLAGS
from jaxrec.data import tfds_prepare
from jaxrec.data import DataError
from jaxrec.errors import InputError
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
        return {"train": self._generate_examples(96, 0), "test": self._generate_examples(24, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for index in range(count):
            yield index, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": index % 3}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The set as `jaxrec prepare` prepares it, and in both formats in three shards each."""
    script = tmp_path_factory.mktemp("script")
    tfds_prepare.prepare(tfds_prepare.builder(NAME, str(script)), NAME)
    sharded = {}
    for file_format in ("array_record", "tfrecord"):
        sharded[file_format] = tmp_path_factory.mktemp(file_format)
        tfds.builder(NAME, data_dir=str(sharded[file_format])).download_and_prepare(
            file_format=file_format, download_config=tfds.download.DownloadConfig(num_shards=3))
    return script, sharded["array_record"], sharded["tfrecord"]


def _without_tensorflow(*args):
    return subprocess.run([sys.executable, str(ROOT / "tests" / "data" / "without_tensorflow.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("split", ["train", "test", "train[:25%]"])
def test_both_formats_read_the_same_arrays_in_the_same_order(prepared, split):
    script, array_record, tfrecord = prepared
    # Three shards of 32, longer than the block TFDS would interleave them by (16).
    assert len(list((tfrecord / NAME / "1.0.0").glob("*-train.tfrecord*"))) == 3
    first, second = (load_tfds(NAME, split, str(where), download=False) for where in (array_record, tfrecord))
    assert len(first) == {"train": 96, "test": 24, "train[:25%]": 24}[split]
    assert first.images.shape[1:] == (8, 8, 3) and first.class_names == ("ant", "bee", "cow")
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert len(np.unique(first.images.reshape(len(first), -1), axis=0)) == len(first)  # all examples, once each
    np.testing.assert_array_equal(np.sort(first.labels), np.sort(load_tfds(NAME, split, str(script), False).labels))


def test_prepare_checks_without_tensorflow_or_jax_and_keeps_a_tfrecord_copy_apart(prepared):
    script, _, tfrecord = prepared
    assert tfds_prepare.ready(NAME, str(script)) and not tfds_prepare.ready(NAME, str(tfrecord))
    with pytest.raises(InputError, match="as tfrecord.*another --data_dir"):
        tfds_prepare.prepare(tfds_prepare.builder(NAME, str(tfrecord)), NAME)
    found = _without_tensorflow("jaxrec", "prepare", NAME, "--data_dir", script, "--check")
    assert found.returncode == 0, found.stderr[-3000:]
    missing = _without_tensorflow("jaxrec", "prepare", NAME, "--data_dir", tfrecord, "--check")
    assert missing.returncode == 1 and "not prepared" in missing.stdout
    # No JAX either: the command runs beside a separate folder of TensorFlow's packages (docs/install.md).
    imported = subprocess.run([sys.executable, "-c", "import sys; from jaxrec.cli import main; "
                               f"main(['prepare', {NAME!r}, '--data_dir', {str(script)!r}, '--check']); "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib')))"],
                              capture_output=True, text=True, timeout=300)
    assert imported.stdout.splitlines()[-1] == "[]", imported.stdout + imported.stderr[-3000:]


@pytest.mark.slow  # a whole run in a fresh process
def test_training_on_an_array_record_set_needs_no_tensorflow(prepared, tmp_path):
    result = _without_tensorflow("jaxrec", "train", "--dataset", NAME, "--data_dir", prepared[0], "--epochs", 1,
                                 "--batch_size", 16, "--workdir", tmp_path / "run", "--progress", "false",
                                 *SMALL_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").exists()


def test_without_tensorflow_a_tfrecord_set_or_preparing_is_refused_in_one_line(prepared, tmp_path):
    tfrecord = _without_tensorflow("jaxrec", "train", "--dataset", NAME, "--data_dir", prepared[2])
    assert tfrecord.returncode == 2 and tfrecord.stderr.count("\n") == 1, tfrecord.stderr[-3000:]
    assert "tfrecord" in tfrecord.stderr and "jaxrec[tfds]" in tfrecord.stderr
    unprepared = _without_tensorflow("jaxrec", "train", "--dataset", "mnist", "--data_dir", tmp_path, "--download")
    assert unprepared.returncode == 2 and unprepared.stderr.count("\n") == 1, unprepared.stderr[-3000:]
    assert "needs TensorFlow" in unprepared.stderr and "jaxrec[tfds]" in unprepared.stderr
    command = _without_tensorflow("jaxrec", "prepare", "mnist", "--data_dir", tmp_path)
    assert command.returncode == 2 and command.stderr.count("\n") == 1, command.stderr[-3000:]
    assert "needs TensorFlow" in command.stderr


def test_a_half_prepared_folder_is_never_reported_prepared(tmp_path, capsys):
    """A version folder with a junk shard and no dataset_info.json: TFDS's download_and_prepare returns
    without preparing anything; jaxrec checks again and says what to delete."""
    version = tmp_path / NAME / "1.0.0"
    version.mkdir(parents=True)
    (version / f"{NAME}-train.array_record-00000-of-00001").write_bytes(b"junk")
    from jaxrec.cli import commands

    assert commands.main(["prepare", NAME, "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"TFDS returned without preparing '{NAME}': {version} holds files of an unfinished preparation" in err
    assert err.count("\n") == 1 and not tfds_prepare.ready(NAME, str(tmp_path))


@pytest.mark.parametrize("name,what", [("cifar10_sample", "cifar10_sample is the sample shipped with jaxrec"),
                                       ("folder", "{folder} is an image folder"),
                                       ("some/image/folder", "some/image/folder is a path")])
def test_prepare_refuses_what_trains_without_preparing(tmp_path, capsys, name, what):
    from jaxrec.cli import commands

    name = str(tmp_path) if name == "folder" else name
    assert commands.main(["prepare", name, "--data_dir", str(tmp_path)]) == 2
    needs_none = "the sample" if name == "cifar10_sample" else "an image folder"
    assert capsys.readouterr().err == (f"error: {what.format(folder=tmp_path)}, not a TFDS data set: jaxrec prepare is "
                                       f"for TFDS data sets only, and {needs_none} needs no preparation; train on it "
                                       f"directly: jaxrec train --dataset {name}\n")


def test_prepare_without_a_name_is_one_line(capsys):
    from jaxrec.cli import commands

    assert commands.main(["prepare", ""]) == 2
    assert capsys.readouterr().err == ("error: jaxrec prepare needs a data set name, got ''; pass a TFDS name, "
                                       "e.g. cifar10\n")


def test_the_tfds_extra_prepares_tfds_own_data_sets(tmp_path):
    # TFDS reads a registered builder's code path (checksums) before downloading, with a package it
    # does not declare (tensorflow/datasets#11212): the tfds extra must bring it.
    extra = [r for r in importlib.metadata.requires("jaxrec") if "extra == \"tfds\"" in r]
    assert any(r.startswith("importlib_resources") for r in extra) and any("tensorflow-cpu" in r for r in extra)
    assert tfds.builder("cifar10", data_dir=str(tmp_path)).code_path.name == "cifar.py"


class JaxrecMixedSizes(tfds.core.GeneratorBasedBuilder):
    """Images of two sizes, as in many TFDS photo sets."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3)),
                                                               "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index in range(4):
            yield index, {"image": np.zeros((8 + index, 8, 3), np.uint8), "label": index % 2}


def test_images_of_different_sizes_are_refused_naming_the_image_folder_route(tmp_path):
    tfds.builder("jaxrec_mixed_sizes", data_dir=str(tmp_path)).download_and_prepare(file_format="array_record")
    with pytest.raises(DataError, match="images of different sizes.*image folder"):
        load_tfds("jaxrec_mixed_sizes", "train", str(tmp_path), download=False)


def test_a_failed_download_is_one_line_naming_the_fixes(tmp_path, monkeypatch):
    def offline(self, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(InputError, match=r"downloading TFDS data set 'mnist' failed \(ConnectionError: .*"
                                         r"internet connection.*jaxrec prepare mnist --data_dir DIR") as err:
        load_tfds("mnist", "train", str(tmp_path), download=True)
    assert "\n" not in str(err.value)
