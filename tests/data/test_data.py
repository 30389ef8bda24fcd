"""Data sources (TFDS via its mocking, image folders, the shipped sample), the device pipeline, bad input."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT, DataError, load_data
from jaxrec.errors import InputError
from jaxrec.core.pipeline import Preprocess, epoch_indices, random_crop_flip
from jaxrec.core.parallel import per_device_batch


def _write_folder(root, splits=("train", "test"), classes=("ann", "bob", "cyd"), per_class=3, size=(20, 16),
                  mode="RGB", suffix=".png"):
    rng = np.random.default_rng(0)
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                shape = (size[0], size[1], 3) if mode == "RGB" else size
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / name / f"{i}{suffix}")
    return root


def test_shipped_sample_is_real_and_small():
    size = sum(f.stat().st_size for f in SAMPLE_ROOT.rglob("*") if f.is_file())
    assert size < 2_000_000
    data = load_data(Config(dataset="cifar10_sample").data_plan)
    assert data.class_names[:3] == ("airplane", "automobile", "bird") and data.num_classes == 10
    assert data.image_shape == (32, 32, 3)
    assert len(data.train) == 400 and len(data.eval) == 100
    assert np.bincount(data.train.labels).tolist() == [40] * 10
    # Real photographs, not noise: CIFAR-10's channel means are near (125, 123, 114).
    assert np.allclose(data.mean, (125, 123, 114), atol=12)


def test_image_folder_with_mixed_sizes_and_grayscale(tmp_path):
    root = _write_folder(tmp_path / "faces", size=(20, 16))
    Image.fromarray(np.zeros((40, 30), np.uint8), "L").save(root / "train" / "ann" / "big_gray.jpg")
    data = load_data(Config(dataset=str(root)).data_plan)
    assert data.class_names == ("ann", "bob", "cyd")
    assert data.image_shape == (20, 16, 3)  # most images' size and colour; the odd one converted
    assert len(data.train) == 10 and len(data.eval) == 9
    assert data.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    small = load_data(Config(dataset=str(root), image_size=8, channels=1).data_plan)
    assert small.image_shape == (8, 8, 1)


def test_tfds_dataset_through_tfds_mocking():
    # mock_data turns download_and_prepare into a no-op and as_dataset into random examples that
    # follow the real dataset_info (shapes, label names); --download lets the loader call it.
    with tfds.testing.mock_data(num_examples=24):
        data = load_data(Config(dataset="mnist", download=True).data_plan)
    assert data.image_shape == (28, 28, 1)
    assert data.num_classes == 10 and len(data.train) == 24 and len(data.eval) == 24
    assert data.train.images.dtype == np.uint8 and data.train.labels.dtype == np.int32
    with tfds.testing.mock_data(num_examples=8):
        converted = load_data(Config(dataset="cifar10", download=True, image_size=16, channels=1).data_plan)
    assert converted.image_shape == (16, 16, 1)


def test_unprepared_tfds_dataset_fails_fast_naming_the_ways_out(tmp_path):
    start = time.time()
    with pytest.raises(DataError) as err:
        load_data(Config(dataset="cifar10", data_dir=str(tmp_path)).data_plan)
    assert time.time() - start < 30
    message = str(err.value)
    for way_out in ("--data_dir", "--download", "image-folder", "cifar10_sample"):
        assert way_out in message


def test_unknown_dataset_name():
    with pytest.raises(InputError, match="unknown data set 'cifar11'"):
        load_data(Config(dataset="cifar11").data_plan)


def test_missing_folder_and_missing_split(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(Config(dataset=str(tmp_path / "nowhere")).data_plan)
    (tmp_path / "config.json").write_text("{}")  # e.g. a run's file passed by mistake
    with pytest.raises(DataError, match=rf"^{tmp_path / 'config.json'} is a file, not an image folder; pass a folder"):
        load_data(Config(dataset=str(tmp_path / "config.json")).data_plan)
    root = _write_folder(tmp_path / "only_train", splits=("train",))
    with pytest.raises(DataError, match=r"has no split 'test' \(found: \['train'\]\); expected the layout "
                                        r"<root>/<split>/<class>/<image>, e.g. .*only_train/test/cat/0001.jpg$"):
        load_data(Config(dataset=str(root)).data_plan)
    root = _write_folder(tmp_path / "with_val", splits=("train", "val"))
    with pytest.raises(DataError, match=r"^image folder .*with_val has no split 'test' \(found: \['train', 'val'\]\); "
                                        r"pass --eval_split val$"):
        load_data(Config(dataset=str(root)).data_plan)
    assert len(load_data(Config(dataset=str(root), eval_split="val").data_plan).eval) == 9  # the fix works


def test_an_eval_class_missing_from_train_names_the_fix(tmp_path):
    root = _write_folder(tmp_path / "data")
    _write_folder(root, splits=("test",), classes=("dan",))
    with pytest.raises(DataError, match=rf"^{root}/test has classes missing from train: \['dan'\]; add their training "
                                        rf"images to {root}/train/<class>/, or remove their folders from {root}/test$"):
        load_data(Config(dataset=str(root)).data_plan)


def test_unreadable_image_is_named(tmp_path):
    root = _write_folder(tmp_path / "data")
    bad = root / "test" / "bob" / "broken.jpg"
    bad.write_text("this is not a JPEG")
    with pytest.raises(DataError, match="cannot read image .*broken.jpg"):
        load_data(Config(dataset=str(root)).data_plan)


def test_indivisible_batch_is_refused_with_a_fix():
    with pytest.raises(ValueError, match="does not divide evenly over 8 devices.*--batch_size 96"):
        per_device_batch(100, 8)
    assert per_device_batch(128, 8) == 16


def test_epoch_indices_are_seeded_permutations():
    key = jax.random.key(3)
    first = epoch_indices(key, 0, 100, 32)
    assert first.shape == (3, 32) and len(set(first.ravel().tolist())) == 96
    np.testing.assert_array_equal(first, epoch_indices(key, 0, 100, 32))
    assert not np.array_equal(first, epoch_indices(key, 1, 100, 32))
    assert not np.array_equal(first, epoch_indices(jax.random.key(4), 0, 100, 32))


def test_random_crop_flip_is_a_shifted_padded_copy():
    image = jnp.asarray(np.random.default_rng(0).integers(1, 256, (8, 8, 3)), jnp.uint8)
    padded = np.pad(np.asarray(image), ((4, 4), (4, 4), (0, 0)))
    candidates = [padded[y:y + 8, x:x + 8] for y in range(9) for x in range(9)]
    candidates += [c[:, ::-1] for c in candidates]
    seen = set()
    for k in range(20):
        out = np.asarray(random_crop_flip(image, jax.random.key(k)))
        matches = [i for i, c in enumerate(candidates) if np.array_equal(out, c)]
        assert matches, "augmented image is not a crop/flip of the padded original"
        seen.add(matches[0])
    assert len(seen) > 5  # it is random


def test_augmentation_depends_on_example_id_not_batch_position():
    pre = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, augment=True)
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3)), jnp.uint8)
    ids = jnp.array([10, 11, 12, 13])
    key = jax.random.key(0)
    together = pre.train(images, ids, key, 3)
    apart = jnp.concatenate([pre.train(images[:2], ids[:2], key, 3), pre.train(images[2:], ids[2:], key, 3)])
    np.testing.assert_array_equal(together, apart)
    assert not np.array_equal(pre.train(images, ids, key, 3), pre.train(images, ids, jax.random.key(1), 3))
    assert not np.array_equal(pre.train(images, ids, key, 3), pre.train(images, ids, key, 4))  # a new draw per step


def test_a_held_out_fraction_for_a_data_set_with_its_own_eval_split_is_refused_not_recorded():
    from jaxrec.data.sources import stream_splits

    with pytest.raises(InputError, match=r"^--test_fraction 0.5 with --dataset cifar10_sample: the data set has its "
                                         r"own test split, so nothing is held out here; drop --test_fraction$"):
        stream_splits(Config(dataset="cifar10_sample", test_fraction=0.5).data_plan)
    assert len(stream_splits(Config(dataset="cifar10_sample").data_plan)[1]) == 100


def test_tfds_flags_for_an_image_folder_are_refused_not_recorded(tmp_path):
    from jaxrec.data.sources import stream_splits

    with pytest.raises(InputError, match=r"^--download and --data_dir with --dataset cifar10_sample: an image folder, "
                                         r"which TFDS does not read; drop --download and --data_dir$"):
        stream_splits(Config(dataset="cifar10_sample", download=True, data_dir=str(tmp_path)).data_plan)
    with pytest.raises(InputError, match=r"^--data_dir with --dataset "):
        stream_splits(Config(dataset="cifar10_sample", data_dir=str(tmp_path)).data_plan)


def test_the_sample_maker_replaces_its_folder_only_with_a_complete_sample(tmp_path, monkeypatch, capsys):
    import sys

    from helpers import load_script

    script = load_script("make_cifar10_sample")
    out = tmp_path / "sample"
    monkeypatch.setattr(sys, "argv", ["make_cifar10_sample.py", str(SAMPLE_ROOT), "--out", str(out),
                                      "--train_per_class", "2", "--test_per_class", "1"])
    assert script.main() == 0 and len(list(out.rglob("*.jpg"))) == 30
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["make_cifar10_sample.py", str(SAMPLE_ROOT), "--out", str(out),
                                      "--train_per_class", "500"])
    assert script.main() == 2 and "fewer than 500; pass a smaller --train_per_class" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and sorted(tmp_path.iterdir()) == [out]
    # An --out inside the source, on a copy: were the check to fail, the package's sample stays as it is.
    monkeypatch.setattr(sys, "argv", ["make_cifar10_sample.py", str(out), "--out", str(out / "x")])
    assert script.main() == 2 and "is the source or inside it" in capsys.readouterr().err
    assert not (out / "x").exists()


def test_images_in_a_folder_inside_a_class_folder_are_named_as_not_read(tmp_path, caplog):
    from jaxrec.data.image_folder import list_images

    for path in ("cat/a.png", "cat/nested/b.png", "dog/c.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / path)
    paths, labels = list_images(tmp_path, ["cat", "dog"])
    assert [p.name for p in paths] == ["a.png", "c.png"] and labels.tolist() == [0, 1]
    assert "the images in folders inside class folders are not read (cat/nested)" in caplog.text
