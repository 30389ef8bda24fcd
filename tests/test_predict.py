"""Evaluating a trained run and classifying new images with it."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT
from jaxrec.evaluate import evaluate_trained
from jaxrec.predict import Predictor
from jaxrec.train import train_and_evaluate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # TODO(after the checkpoints merge): load_trained(workdir) instead of this stand-in.
    from conftest import SMALL

    workdir = tmp_path_factory.mktemp("run")
    config = Config(dataset="cifar10_sample", epochs=2, batch_size=32, num_devices=1, progress=False,
                    steps_per_call=4, **SMALL)
    state = train_and_evaluate(config, workdir)
    return types.SimpleNamespace(config=config, params=state.params, step=int(state.step), epoch=2,
                                 dataset=json.loads((workdir / "dataset.json").read_text()), workdir=workdir)


def test_predict_on_test_images_agrees_with_evaluation(trained):
    result = evaluate_trained(trained, split="test", num_devices=8, batch_size=24)
    saved = json.loads((trained.workdir / "eval.json").read_text())  # written at the end of training
    assert result["confusion"] == saved["confusion"] and result["count"] == 100
    entries = Predictor(trained, batch_size=64).predict([SAMPLE_ROOT / "test"], k=3)
    assert len(entries) == 100 and all("error" not in e for e in entries)
    names = trained.dataset["class_names"]
    confusion = np.zeros((10, 10), int)
    for entry in entries:
        true = names.index(Path(entry["path"]).parent.name)
        confusion[true, names.index(entry["top_k"][0]["class"])] += 1
        probabilities = [t["probability"] for t in entry["top_k"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    np.testing.assert_array_equal(confusion, result["confusion"])


def test_grayscale_odd_sized_bad_and_missing_files(trained, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 37), dtype=np.uint8), "L").save(tmp_path / "gray.png")
    Image.fromarray(rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)).save(tmp_path / "odd.jpg")
    (tmp_path / "x.jpg").write_text("not an image")
    entries = Predictor(trained).predict([tmp_path, tmp_path / "missing.png"], k=20)
    by_name = {Path(e["path"]).name: e for e in entries}
    assert set(by_name) == {"gray.png", "odd.jpg", "x.jpg", "missing.png"}
    for good in ("gray.png", "odd.jpg"):
        assert len(by_name[good]["top_k"]) == 10  # k clipped to the class count
        assert sum(t["probability"] for t in by_name[good]["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert "cannot read image" in by_name["x.jpg"]["error"] and "x.jpg" in by_name["x.jpg"]["error"]
    assert by_name["missing.png"]["error"] == "no such file or folder"
