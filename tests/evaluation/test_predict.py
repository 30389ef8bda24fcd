"""Evaluating a saved run (`jaxrec evaluate`) and classifying new images with it (`jaxrec predict`)."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SMALL, script_command, with_file_size_limit, without_fake_devices
from jaxrec.cli import commands as cli
from jaxrec.run.checkpoints import load_trained
from jaxrec.config import Config
from jaxrec.data import SAMPLE_ROOT
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import evaluate_trained
from jaxrec.evaluation.predict import Predictor
from jaxrec.training.loop import train_and_evaluate

pytestmark = pytest.mark.slow  # every test here uses a trained run (the module fixture)


def evaluate(*args) -> int:
    return cli.main(["evaluate", *map(str, args)])


def predict(*args) -> int:
    return cli.main(["predict", *map(str, args)])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A finished 2-epoch run on the shipped sample, with its checkpoints."""
    workdir = tmp_path_factory.mktemp("run")
    config = Config(dataset="cifar10_sample", epochs=2, batch_size=32, num_devices=1, progress=False,
                    steps_per_call=4, **SMALL)
    train_and_evaluate(config, workdir)
    return workdir


def test_evaluate_reproduces_the_training_evaluation_without_overwriting_it(workdir, capsys):
    before = (workdir / "eval.json").read_text()
    saved = json.loads(before)
    assert saved["count"] == 100 and saved["top_k"] == 5 and len(saved["per_class"]) == 10
    assert evaluate("--workdir", workdir, "--which", "latest", "--num_devices", "8", "--batch_size", "24",
                    "--top_k", "3") == 0
    again = json.loads((workdir / "eval_test_latest.json").read_text())
    assert again["confusion"] == saved["confusion"] and again["top_k"] == 3  # the final state, on 8 devices
    final = json.loads((workdir / "summary.json").read_text())["steps"]
    assert again["scored"] == {"workdir": str(workdir), "which": "latest", "step": final, "epoch": 2,
                               "dataset": "cifar10_sample", "split": "test"}  # what it scored, in the report
    assert (workdir / "eval.json").read_text() == before
    assert (workdir / "confusion_test_latest.png").exists() and "| airplane |" in capsys.readouterr().out
    assert evaluate("--workdir", workdir, "--split", "train") == 0  # the best checkpoint
    assert json.loads((workdir / "eval_train.json").read_text())["count"] == 400


def test_predict_on_test_images_gives_the_classes_evaluation_counted(workdir, capsys):
    assert evaluate("--workdir", workdir, "--out", workdir / "best") == 0
    best = json.loads((workdir / "best" / "eval_test.json").read_text())
    capsys.readouterr()
    assert predict("--workdir", workdir, "--json", "--top_k", "3", SAMPLE_ROOT / "test") == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 100 and all("error" not in e for e in entries)
    names = best["class_names"]
    confusion = np.zeros((10, 10), int)
    for entry in entries:
        true = names.index(Path(entry["path"]).parent.name)
        confusion[true, names.index(entry["top_k"][0]["class"])] += 1
        probabilities = [t["probability"] for t in entry["top_k"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    np.testing.assert_array_equal(confusion, best["confusion"])


def test_grayscale_png_odd_jpeg_bad_and_missing_files(workdir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 37), dtype=np.uint8), "L").save(tmp_path / "gray.png")
    Image.fromarray(rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)).save(tmp_path / "odd.jpg")
    (tmp_path / "x.jpg").write_text("not an image")
    code = predict("--workdir", workdir, "--top_k", "20", tmp_path, tmp_path / "missing.png")
    out, err = capsys.readouterr()
    assert code == 1  # some files failed; the others were still classified
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert set(lines) == {str(tmp_path / "gray.png"), str(tmp_path / "odd.jpg")}
    assert all(len(line.split(", ")) == 10 for line in lines.values())  # k clipped to the class count
    assert f"{tmp_path / 'x.jpg'}: error: cannot read image" in err
    assert f"{tmp_path / 'missing.png'}: error: no such file or folder" in err
    assert "2 of 4 file(s) could not be classified" in err
    (entry,) = Predictor(load_trained(workdir)).predict([tmp_path / "gray.png"], k=10)
    assert sum(t["probability"] for t in entry["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_a_decompression_bomb_is_one_file_s_error_and_transparency_is_stated(workdir, tmp_path, capsys, monkeypatch):
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(tmp_path / "bomb.png")
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8), "RGBA").save(tmp_path / "clear.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 90,000 pixels is over twice Pillow's limit
    code = predict("--workdir", workdir, tmp_path)
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"{tmp_path / 'bomb.png'}: error: cannot read image" in err and "decompression bomb" in err
    assert out.startswith(f"{tmp_path / 'clear.png'}: ") and out.rstrip().endswith("(transparency composited on white)")


def test_workdir_without_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert predict("--workdir", tmp_path, "x.jpg") == 2
    assert evaluate("--workdir", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("holds no checkpoints") == 2 and "Traceback" not in err


def test_evaluate_on_another_folder_with_some_of_the_classes(workdir, tmp_path, capsys):
    import shutil

    # A test split of its own (no train split): 2 of the 10 classes, and one the model does not know.
    for name, copy in (("cat", "cat"), ("ship", "ship"), ("bird", "zebra")):
        shutil.copytree(SAMPLE_ROOT / "test" / name, tmp_path / "other" / "test" / copy)
    assert evaluate("--workdir", workdir, "--dataset", tmp_path / "other", "--out", tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "eval_other_test.json").read_text())
    support = {row["class"]: row["support"] for row in result["per_class"]}
    assert "leaving out 10 images of classes the model does not know: zebra" in capsys.readouterr().err
    assert support["cat"] == support["ship"] == 10 and sum(support.values()) == 20  # labels follow the names
    shutil.copytree(SAMPLE_ROOT / "test" / "cat", tmp_path / "zoo" / "test" / "zebra")
    assert evaluate("--workdir", workdir, "--dataset", tmp_path / "zoo") == 2
    assert "has none of the model's classes" in capsys.readouterr().err


def test_tfds_flags_typed_for_an_image_folder_are_refused_not_ignored(workdir, tmp_path, capsys):
    assert evaluate("--workdir", workdir, "--data_dir", tmp_path, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("--data_dir with --dataset cifar10_sample: an image folder, which TFDS "
                                             "does not read; drop --data_dir")
    assert not (tmp_path / "out").exists()


def test_a_run_whose_image_folder_moved_names_the_flag_that_finds_it(workdir, tmp_path):
    trained = load_trained(workdir)
    moved = dataclasses.replace(trained, config=trained.config.replace(dataset=str(tmp_path / "photos")))
    with pytest.raises(InputError, match=rf"^the run's image folder {tmp_path / 'photos'} does not exist \(moved or "
                                         rf"deleted since the run trained\); if it moved, pass its new path: "
                                         rf"--dataset NEWPATH$"):
        evaluate_trained(moved)
    with pytest.raises(InputError, match=rf"^image folder {tmp_path / 'elsewhere'} does not exist; pass a folder"):
        evaluate_trained(moved, moved.config.replace(dataset=str(tmp_path / "elsewhere")))  # --dataset's own path


def test_an_out_that_cannot_be_written_is_refused_in_one_line_before_evaluating(workdir, tmp_path, capsys):
    (tmp_path / "report").write_text("a file")
    assert evaluate("--workdir", workdir, "--out", tmp_path / "report") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("is a file, not a folder; choose another --out")
    assert not list(tmp_path.glob("eval_*")) and (tmp_path / "report").read_text() == "a file"
    assert evaluate("--workdir", workdir, "--split", "nosuch", "--out", tmp_path / "new" / "out") == 2
    assert "nosuch" in capsys.readouterr().err and not (tmp_path / "new").exists()  # refused: no folder of its making


def test_a_shared_out_keeps_another_run_s_report_and_replaces_this_run_s_own(workdir, tmp_path, capsys):
    other = {"scored": {"workdir": str(tmp_path / "another_run"), "dataset": "cifar10_sample"}, "accuracy": 0.5}
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "eval_test.json").write_text(json.dumps(other))
    assert evaluate("--workdir", workdir, "--out", tmp_path / "shared") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"a report of {tmp_path / 'another_run'} on cifar10_sample; pass another" in err
    assert json.loads((tmp_path / "shared" / "eval_test.json").read_text()) == other
    assert not (tmp_path / "shared" / "eval_test.md").exists()
    assert evaluate("--workdir", workdir, "--out", tmp_path / "mine") == 0
    assert evaluate("--workdir", workdir, "--out", tmp_path / "mine") == 0  # its own report: evaluated anew


def test_a_report_that_cannot_be_written_is_one_line_and_the_earlier_one_stays_whole(workdir, tmp_path):
    import os
    import subprocess

    assert evaluate("--workdir", workdir, "--out", tmp_path) == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    command = script_command("jaxrec", "evaluate", "--workdir", workdir, "--out", tmp_path)
    limited = subprocess.run(with_file_size_limit(command, 2), capture_output=True, text=True,  # below the report
                             env=without_fake_devices(os.environ), timeout=300)
    assert limited.returncode == 2 and "Traceback" not in limited.stderr
    last = limited.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {tmp_path}/eval_test") and "the file-size limit" in last
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no half file, no temporary


def test_evaluate_refuses_the_flag_combinations_train_refuses(tmp_path, capsys):
    assert evaluate("--workdir", tmp_path, "--input", "device", "--data_workers", "1") == 2
    assert capsys.readouterr().err.startswith("error: --data_workers 1 with --input device: workers only read")


def test_an_out_under_home_is_written_there_and_only_there(workdir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert evaluate("--workdir", workdir, "--out", "~/reports") == 0
    assert (tmp_path / "home" / "reports" / "eval_test.json").exists() and not (tmp_path / "~").exists()


def test_a_run_with_no_evaluated_checkpoint_is_reported_as_its_latest(small_config, tmp_path, capsys):
    train_and_evaluate(small_config.replace(checkpoint_every_steps=4, checkpoint_keep=3), tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "12")  # the evaluated one, at the epoch's end
    assert evaluate("--workdir", tmp_path / "run") == 0
    assert "using the latest instead of the best" in capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "eval_test_latest.json").read_text())
    assert report["scored"]["which"] == "latest" and report["scored"]["step"] == 8
    assert not (tmp_path / "run" / "eval_test.json").exists()


def test_new_images_are_brought_to_the_model_s_size_as_its_training_images_were(workdir, tmp_path):
    pixels = np.zeros((32, 96, 3), np.uint8)  # a wide photo: its centre square red, the sides blue
    pixels[..., 2] = 255
    pixels[:, 32:64] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    trained = load_trained(workdir)
    assert trained.config.resize == "stretch"
    stretched = Predictor(trained).read(tmp_path / "wide.png")[0]
    cropped = Predictor(dataclasses.replace(trained, config=trained.config.replace(resize="crop"))).read(
        tmp_path / "wide.png")[0]
    assert (cropped == (255, 0, 0)).all() and (stretched[:, 0] == (0, 0, 255)).all()


def test_evaluate_streams_a_split_that_does_not_fit_and_scores_it_the_same(workdir, tmp_path, monkeypatch, capsys):
    from jaxrec.runtime import memory

    assert evaluate("--workdir", workdir, "--tta", "1", "--out", tmp_path / "device", "--input", "device") == 0
    assert evaluate("--workdir", workdir, "--tta", "1", "--out", tmp_path / "stream", "--input", "stream",
                    "--data_workers", "1") == 0
    on_device = json.loads((tmp_path / "device" / "eval_test.json").read_text())
    assert json.loads((tmp_path / "stream" / "eval_test.json").read_text()) == on_device  # TTA's two passes too
    monkeypatch.setattr(memory, "host_available", lambda: 100 * 32 * 32 * 3 - 1)  # the 100 test images do not fit
    capsys.readouterr()
    assert evaluate("--workdir", workdir, "--out", tmp_path / "auto", "--tta", "1") == 0
    assert "evaluating test streamed (--input auto): decoding 100 images at 32x32x3" in capsys.readouterr().err
    assert json.loads((tmp_path / "auto" / "eval_test.json").read_text()) == on_device
    assert evaluate("--workdir", workdir, "--input", "device") == 2
    assert capsys.readouterr().err.strip().endswith("; or pass --input stream to read the data as batches need it")
