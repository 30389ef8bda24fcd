"""Seed studies: the seeds and sources asked for, each seed a normal run, resuming, the statistics."""

import json
import os
import shutil
import time
from pathlib import Path

import chex
import numpy as np
import pytest

from helpers import SMALL, records, sigterm_after
from jaxrec.run import outputs
from jaxrec.config import SOURCES, Config
from jaxrec.core.pipeline import epoch_indices
from jaxrec.data.sources import SAMPLE_ROOT
from jaxrec.errors import InputError
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.models import config_for, create_model
from jaxrec.core.state import create_train_state
from jaxrec.studies import stats
from jaxrec.studies.study import (StudySpec, agreement, check_determinism, check_sources, metric_statistics,
                                  parse_seeds, parse_vary, run_study, spec_differences, study_markdown)
from jaxrec.training.loop import RunKeys, train_and_evaluate


def test_seeds_and_sources_parse_as_documented():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4) and parse_seeds("0,3,7") == (0, 3, 7)
    assert parse_seeds("0-2,9") == (0, 1, 2, 9) and parse_seeds(" 5 ") == (5,)
    assert len(parse_seeds("0-999")) == 1000  # the cap itself is allowed
    assert parse_vary("all") == SOURCES and parse_vary("order,init") == ("init", "order")


@pytest.mark.parametrize("text,message", [("", "no seeds"), ("1-x", "'1-x' is not a seed"),
                                          ("3-1", "'3-1' is not a seed or a range"), ("0-3,2", r"seed\(s\) 2 given twice"),
                                          ("0-100000", "more than 1000 seeds"), ("0-10**12", "is not a seed"),
                                          ("0-999999999999", "more than 1000 seeds"),
                                          ("0-999,5000", "more than 1000 seeds"),
                                          ("-3", r"^--seeds '-3': seed -3 is out of range; each seed must be in "
                                                 r"\[0, 4294967296\)$"),
                                          ("4294967295-4294967296", "seed 4294967296 is out of range")])
def test_bad_seeds_are_one_line(text, message):
    start = time.perf_counter()
    with pytest.raises(InputError, match=message) as refused:
        parse_seeds(text)
    assert "\n" not in str(refused.value)
    assert time.perf_counter() - start < 1  # refused before a range is expanded: no minutes of silence


@pytest.mark.parametrize("changes,vary,refusal", [
    ({}, ("augment",), "--vary augment: augment cannot vary, the run has no augmentation"),
    ({}, ("init", "split"), r"split cannot vary, cifar10_sample has its own eval split .*; pass --vary init$"),
    ({"init_seed": 3}, ("init", "order"), "init cannot vary, --init_seed 3 pins it; pass --vary order"),
    ({"augment": True, "augment_seed": 1}, ("augment",), "--augment_seed 1 pins it; vary another source"),
    ({"seed": 7}, SOURCES, "--seed 7: a study sets each run's seed from --seeds"),
    ({"init_seed": 1, "order_seed": 2}, SOURCES, "--vary all: no source can vary"),
])
def test_a_source_that_cannot_vary_is_refused_before_training(small_config, tmp_path, changes, vary, refusal):
    spec = StudySpec(small_config.replace(**changes), seeds=(0, 1), vary=vary)
    with pytest.raises(InputError, match=refusal) as refused:
        run_study(spec, tmp_path)
    assert "\n" not in str(refused.value) and not (tmp_path / "seed_0").exists()


def test_vary_all_varies_only_what_can_vary(small_config, tmp_path):
    # cifar10_sample has split folders and no augmentation here: only init and order move.
    assert check_sources(StudySpec(small_config, (0,), SOURCES)) == ("init", "order")
    assert check_sources(StudySpec(small_config.replace(init_seed=3, augment=True), (0,), SOURCES)) == ("order", "augment")
    airbench = config_for("airbench94", dataset="cifar10_sample")  # translate and flip draw from augment
    assert "augment" in check_sources(StudySpec(airbench, (0,), SOURCES))
    unsplit = tmp_path / "photos"
    for name in ("cat", "dog"):
        (unsplit / name).mkdir(parents=True)
    assert check_sources(StudySpec(small_config.replace(dataset=str(unsplit)), (0,), ("split",))) == ("split",)


@pytest.mark.slow
def test_a_study_of_every_source_records_the_ones_it_varied(small_config, tmp_path):
    study = run_study(StudySpec(small_config.replace(init_seed=3), seeds=(0, 1), vary=SOURCES), tmp_path / "study")
    assert study["varied"] == ["order"] and study["vary"] == list(SOURCES)
    assert "varying order" in (tmp_path / "study" / "study.md").read_text()


def test_a_base_seed_out_of_range_is_refused_even_when_no_source_uses_it(small_config, tmp_path):
    with pytest.raises(InputError, match=r"--base_seed -5: must be in \[0, 4294967296\)"):
        run_study(StudySpec(small_config, seeds=(0, 1), vary=SOURCES, base_seed=-5), tmp_path)
    assert not (tmp_path / "seed_0").exists()


def test_an_unknown_source_is_refused_naming_the_choices():
    with pytest.raises(InputError, match=r"--vary 'init,weights': weights is not a source of randomness; choose all or "
                                         r"a comma list of init, order, augment, split"):
        parse_vary("init,weights")


def test_each_seed_sets_the_varied_sources_and_only_those(tmp_path):
    spec = StudySpec(Config(**SMALL), seeds=(3, 4), vary=("order",), base_seed=9)
    configs = [spec.seed_config(seed, tmp_path) for seed in spec.seeds]
    assert [c.source_seeds() for c in configs] == [{"init": 9, "order": 3, "augment": 9, "split": 9},
                                                   {"init": 9, "order": 4, "augment": 9, "split": 9}]
    keys = [RunKeys.from_config(c) for c in configs]
    model = create_model(configs[0], 10)
    params = [create_train_state(c.optimisation, model, (32, 32, 3), k.init, 10).params for c, k in zip(configs, keys)]
    chex.assert_trees_all_equal(*params)  # the same start...
    orders = [epoch_indices(k.shuffle, 0, 400, 32) for k in keys]
    assert not np.array_equal(*orders)  # ...another data order
    init = StudySpec(Config(**SMALL), seeds=(3, 4), vary=("init",), base_seed=9)  # the opposite
    keys = [RunKeys.from_config(init.seed_config(seed, tmp_path)) for seed in init.seeds]
    starts = [create_train_state(configs[0].optimisation, model, (32, 32, 3), k.init, 10).params["Dense_1"]["kernel"]
              for k in keys]
    assert not np.array_equal(*starts)
    np.testing.assert_array_equal(*[epoch_indices(k.shuffle, 0, 400, 32) for k in keys])
    everything = StudySpec(Config(**SMALL), seeds=(3,), vary=SOURCES).seed_config(3, tmp_path)
    assert everything == Config(**SMALL, seed=3, workdir=str(tmp_path / "seed_3"), save_predictions=True)


def test_the_study_table_says_which_metrics_have_no_intervals_and_why():
    metrics = {"test_accuracy": stats.describe([0.5, 0.5]), "test_loss": stats.describe([1.0, 1.2]),
               "test_macro_f1": stats.describe([0.4, 0.4]), "per_class_accuracy": {}}
    table = study_markdown({"metrics": metrics, "seeds": [0, 1], "vary": ["init"], "disagreement": None})
    assert "\nNo intervals for test_accuracy, test_macro_f1: no spread observed: 2 seeds identical.\n" in table
    assert "test_loss:" not in table


def test_disagreement_and_ensemble_on_a_hand_case():
    labels = np.array([0, 1, 1])
    probabilities = {0: np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]),   # predicts 0, 0, 1
                     1: np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])}   # predicts 0, 1, 1
    result = agreement(probabilities, labels)
    assert result["disagreement"]["values"] == [pytest.approx(1 / 3)]  # one pair, one image of three
    assert result["disagreement"]["note"] == "1 pair: a spread needs at least 2"  # of two seeds
    assert result["ensemble_accuracy"] == 1.0  # averaged: 0 (0.75), 1 (0.65), 1 (0.75)
    assert agreement({0: probabilities[0]}, labels)["disagreement"] is None  # one seed has no pair


@pytest.mark.slow
def test_a_study_seed_is_the_plain_run_and_a_rerun_trains_nothing(small_config, tmp_path):
    spec = StudySpec(small_config, seeds=(0, 1), vary=SOURCES)
    study = run_study(spec, tmp_path / "study")
    train_and_evaluate(small_config.replace(seed=1), tmp_path / "plain")
    assert records(tmp_path / "study" / "seed_1") == records(tmp_path / "plain")
    probabilities, labels = outputs.read_predictions(tmp_path / "study" / "seed_1")
    assert probabilities.shape == (100, 10) and np.allclose(probabilities.sum(-1), 1, atol=1e-2)
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    accuracy = study["metrics"]["test_accuracy"]
    assert accuracy["n"] == 2 and accuracy["values"][1] == summary["test_accuracy"]
    assert float(np.mean(probabilities.argmax(-1) == labels)) == pytest.approx(summary["test_accuracy"], abs=0.011)
    assert 0 <= study["disagreement"]["mean"] <= 1 and 0 <= study["ensemble_accuracy"] <= 1
    for name in ("study_curves.png", "study_accuracy.png", "study_per_class.png"):
        assert (tmp_path / "study" / name).read_bytes()[:4] == b"\x89PNG"
    stamp = (tmp_path / "study" / "seed_0" / "summary.json").stat().st_mtime_ns
    assert run_study(spec, tmp_path / "study")["metrics"] == study["metrics"]
    assert (tmp_path / "study" / "seed_0" / "summary.json").stat().st_mtime_ns == stamp  # not retrained
    with pytest.raises(InputError, match=r"holds a study with other settings: learning_rate"):
        run_study(StudySpec(small_config.replace(learning_rate=0.1), seeds=(0,), vary=SOURCES), tmp_path / "study")
    study_json = (tmp_path / "study" / "study.json").read_bytes()
    with pytest.raises(InputError, match=r"study whose seed 1 has trained, and --seeds leaves them out"):
        run_study(StudySpec(small_config, seeds=(0,), vary=SOURCES), tmp_path / "study")
    assert (tmp_path / "study" / "study.json").read_bytes() == study_json  # still the 2-seed study


@pytest.mark.slow
def test_a_study_never_mixes_runs_of_other_data_or_settings(small_config, tmp_path, monkeypatch):
    """Another --dataset of the same layout, a seed folder left by another run, data changed in place,
    a damaged seed summary: each refused in one line naming what differs, never folded in."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_ROOT, data)
    config = small_config.replace(dataset=str(data))
    run_study(StudySpec(config, seeds=(0,), vary=SOURCES), tmp_path / "study")
    with pytest.raises(InputError, match=r"holds a study with other settings: dataset \(study: '.*data', now: "
                                         r"'cifar10_sample'\)"):
        run_study(StudySpec(small_config, seeds=(0, 1), vary=SOURCES), tmp_path / "study")
    # The same folder named another way is the same data set, from any folder: a path is recorded absolute.
    relative = os.path.relpath(data)
    run_study(StudySpec(config.replace(dataset=relative), seeds=(0,), vary=SOURCES), tmp_path / "study")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_study(StudySpec(config.replace(dataset="../data"), seeds=(0,), vary=SOURCES), tmp_path / "study")
    monkeypatch.undo()
    # A seed folder another run left behind, with other settings.
    train_and_evaluate(config.replace(seed=1, learning_rate=0.05, save_predictions=True), tmp_path / "study" / "seed_1")
    spec_text = (tmp_path / "study" / "study_spec.json").read_text()
    with pytest.raises(InputError, match=r"seed_1 holds a run that is not this study's seed 1: learning_rate "
                                         r"\(seed_1: 0.05, study: 0.01\); move it away"):
        run_study(StudySpec(config.replace(steps_per_call=2), seeds=(0, 1), vary=SOURCES), tmp_path / "study")
    assert (tmp_path / "study" / "study_spec.json").read_text() == spec_text  # refused: the spec as it was
    shutil.rmtree(tmp_path / "study" / "seed_1")
    # The data set changed in place after seed 0: seed 1 reads other images and the study says so.
    victim = sorted((data / "train").rglob("*.jpg"))[0]
    victim.write_bytes(sorted((data / "train").rglob("*.jpg"))[-1].read_bytes())
    with pytest.raises(InputError, match=r"seed_1 holds a run that is not this study's seed 1: mean \(seed_0: "):
        run_study(StudySpec(config, seeds=(0, 1), vary=SOURCES), tmp_path / "study")
    spec_file = tmp_path / "study" / "study_spec.json"
    good = spec_file.read_text()
    spec_file.write_text(good[:40])
    with pytest.raises(InputError, match=r"study_spec.json is damaged \(JSONDecodeError: "):
        run_study(StudySpec(config, seeds=(0, 1), vary=SOURCES), tmp_path / "study")
    spec_file.write_text(good)
    (tmp_path / "study" / "seed_0" / "summary.json").write_text('{"config": ')
    with pytest.raises(InputError, match=r"seed_0/summary.json is damaged \(JSONDecodeError: .*\); move .*seed_0 away"):
        run_study(StudySpec(config, seeds=(0, 1), vary=SOURCES), tmp_path / "study")


@pytest.mark.slow
def test_a_study_stopped_by_sigterm_and_rerun_equals_the_uninterrupted_study(small_config, tmp_path, monkeypatch):
    spec = StudySpec(small_config.replace(epochs=2), seeds=(4, 5), vary=("order",))
    straight = run_study(spec, tmp_path / "straight")
    sigterm_after(monkeypatch, 18)  # seed 4 stops in the middle of epoch 2 (step 6 of 12)
    with pytest.raises(TrainingInterrupted):
        run_study(spec, tmp_path / "stopped")
    monkeypatch.undo()
    assert not (tmp_path / "stopped" / "study.json").exists()
    resumed = run_study(spec, tmp_path / "stopped")
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["disagreement"]["values"] == straight["disagreement"]["values"]  # one pair: std is NaN
    assert resumed["ensemble_accuracy"] == straight["ensemble_accuracy"]


@pytest.mark.slow
def test_check_determinism_trains_a_seed_twice_and_finds_it_bit_identical(small_config, tmp_path):
    result = check_determinism(StudySpec(small_config, seeds=(2,), vary=SOURCES), tmp_path)
    assert result["bit_identical"] and result["parameters_identical"] and result["seed"] == 2
    assert json.loads((tmp_path / "determinism.json").read_text())["bit_identical"] is True


def test_a_study_whose_spec_recorded_a_seed_can_be_continued():
    """Before study --seed was refused a spec could record one; it never reached a run (each run's seed
    comes from --seeds), so continuing such a study is not a difference, and real ones still are."""
    now = StudySpec(Config(**SMALL), seeds=(0, 1), vary=SOURCES)
    saved = StudySpec(Config(**SMALL, seed=7), seeds=(0,), vary=SOURCES)
    assert spec_differences(saved, now) == []
    assert saved.seed_config(1, Path("w")) == now.seed_config(1, Path("w"))
    other = StudySpec(Config(**SMALL, seed=7, learning_rate=0.5), seeds=(0,), vary=SOURCES)
    assert [d.split(" ")[0] for d in spec_differences(other, now)] == ["learning_rate"]


def test_a_study_s_intervals_stay_within_each_metric_s_range():
    runs = [{"summary": {"test_accuracy": a, "test_loss": loss, "test_macro_f1": a, "test_accuracy_per_epoch": [a]},
             "eval": {"class_names": ["cat"], "per_class": [{"recall": a}]}}
            for a, loss in ((1.0, 0.01), (1.0, 0.02), (0.97, 0.30))]  # Student t would pass 1 and go below 0
    metrics = metric_statistics(runs)
    ends = [metrics[name]["ci95"] for name in ("test_accuracy", "test_macro_f1")]
    ends += [metrics["test_accuracy_per_epoch"][0]["ci95"], metrics["per_class_accuracy"]["cat"]["ci95"]]
    assert all(high == 1.0 for _, high in ends) and metrics["test_loss"]["ci95"][0] == 0.0
