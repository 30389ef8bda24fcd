"""The faces workflow: a folder of people without a split on disk, mixed sizes/modes/formats."""

import json
import logging
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from helpers import SMALL_FLAGS, load_script, run_script
from jaxrec.run.checkpoints import load_trained
from jaxrec.config import Config
from jaxrec.data import DataError, load_data
from jaxrec.data.image_folder import list_folder
from jaxrec.evaluation.evaluator import evaluate_trained
from jaxrec.evaluation.predict import Predictor

write_faces = load_script("make_demo_faces").write_faces

PEOPLE = [12, 10, 9, 11, 2]  # the last person has too few images for min_images_per_class=5


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("faces"), people=len(PEOPLE), images_per_person=PEOPLE,
                       sizes=(24, 37, 50), seed=0)


def test_generated_folder_mixes_sizes_modes_and_formats(faces):
    files = sorted(faces.rglob("*.*"))
    suffixes = Counter(f.suffix for f in files)
    assert {".pgm", ".jpg", ".png"} <= set(suffixes)
    modes, sizes = set(), set()
    for f in files:
        with Image.open(f) as image:
            modes.add(image.mode)
            sizes.add(image.size)
    assert {"L", "RGB"} <= modes and len(sizes) >= 3


def _split(faces, seed, fraction=0.25):
    listing = list_folder(faces, "train", "test", test_fraction=fraction, min_images_per_class=5, seed=seed)
    return listing, [set(map(str, files[0])) for files in (listing.train, listing.eval)]


def test_split_is_stratified_seeded_and_drops_small_classes(faces, caplog):
    with caplog.at_level(logging.WARNING, logger="jaxrec"):
        listing, (train, test) = _split(faces, seed=0)
    assert "dropped 1 of 5 classes with fewer than 5 images" in caplog.text and "person_04 (2)" in caplog.text
    assert listing.classes == ("person_00", "person_01", "person_02", "person_03")
    assert not train & test and len(train | test) == sum(PEOPLE[:4])
    # Stratified: each person keeps round(25%) of their images for test, the rest for training.
    test_counts = np.bincount(listing.eval[1], minlength=4).tolist()
    assert test_counts == [round(n * 0.25) for n in PEOPLE[:4]] == [3, 2, 2, 3]
    assert np.bincount(listing.train[1]).tolist() == [n - t for n, t in zip(PEOPLE[:4], test_counts)]
    for paths, labels in (listing.train, listing.eval):  # labels follow the folder names
        assert all(p.parent.name == listing.classes[label] for p, label in zip(paths, labels))
    assert _split(faces, seed=0)[1] == [train, test]
    other = _split(faces, seed=1)[1]
    assert other[1] != test and not other[0] & other[1]


def test_loading_resizes_and_converts_every_image(faces):
    config = Config(dataset=str(faces), image_size=20, channels=3, min_images_per_class=5, test_fraction=0.25)
    data = load_data(config.data_plan)
    assert data.image_shape == (20, 20, 3) and data.num_classes == 4
    assert len(data.train) + len(data.eval) == sum(PEOPLE[:4]) and len(data.eval) == 10
    gray = load_data(config.replace(channels=1).data_plan)
    assert gray.image_shape == (20, 20, 1)
    np.testing.assert_array_equal(gray.eval.labels, data.eval.labels)


def test_too_few_images_per_class_names_the_fix(faces):
    with pytest.raises(DataError, match="lower --min_images_per_class"):
        load_data(Config(dataset=str(faces), min_images_per_class=50).data_plan)


def test_one_class_is_refused_without_suggesting_a_lower_minimum(tmp_path):
    one = write_faces(tmp_path / "one", people=1, images_per_person=4, sizes=(24,))
    with pytest.raises(DataError) as refused:
        load_data(Config(dataset=str(one), min_images_per_class=1).data_plan)
    assert str(refused.value) == (f"{one}: only 1 class(es) have at least 2 images (of 1); training needs at least 2 "
                                  f"classes of at least 2 images (one is held out for evaluation): add images")


@pytest.mark.slow
def test_faces_script_trains_then_evaluate_and_predict_work(faces, tmp_path):
    workdir = tmp_path / "run"
    result = run_script("experiments/faces_cnn.py", "--data", faces, "--seed", "0", "--epochs", "2", "--image_size",
                        "24", "--batch_size", "8", *SMALL_FLAGS, "--test_fraction", "0.25", "--progress", "false",
                        "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((workdir / "config.json").read_text())
    assert config["dataset"] == str(faces) and config["min_images_per_class"] == 5  # the faces defaults
    saved = json.loads((workdir / "eval.json").read_text())
    assert [row["class"] for row in saved["per_class"]] == [f"person_0{i}" for i in range(4)]
    assert [row["support"] for row in saved["per_class"]] == [3, 2, 2, 3]  # the held-out images per person
    assert "test_macro_f1" in json.loads((workdir / "summary.json").read_text())

    trained = load_trained(workdir, "latest")
    again = evaluate_trained(trained)  # the same seeded split is drawn again from the folder
    assert again["confusion"] == saved["confusion"]
    # A new picture of person 2 (another photo seed), of a size and format of its own.
    new = write_faces(tmp_path / "new", people=3, images_per_person=[0, 0, 1], sizes=(41,), formats=(".pgm",),
                      photo_seed=1)
    (entry,) = Predictor(trained).predict([new], k=2)
    assert entry["path"].endswith("person_02/000.pgm") and len(entry["top_k"]) == 2
    assert {c["class"] for c in entry["top_k"]} <= set(saved["class_names"])  # names, not indices


def test_the_face_maker_refuses_a_folder_that_holds_files_and_counts_below_one(tmp_path, monkeypatch, capsys):
    import sys

    script = load_script("make_demo_faces")
    for argv, problem in ((["--out", str(tmp_path / "a"), "--people", "0"], "must be >= 1"),
                          (["--out", str(tmp_path / "a"), "--people", "2", "--images_per_person", "1"], None),
                          (["--out", str(tmp_path / "a"), "--photo_seed", "1"], "already holds files")):
        monkeypatch.setattr(sys, "argv", ["make_demo_faces.py", *argv])
        assert script.main() == (2 if problem else 0)
        assert problem is None or problem in capsys.readouterr().err
    assert len(list((tmp_path / "a").rglob("*.*"))) == 2  # not mixed with more
