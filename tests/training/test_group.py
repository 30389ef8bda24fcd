"""Several seeds in one program (jaxrec.training.loop.train_group): each is its plain run, a stopped program resumes from
the step all its seeds reached, a study compiles its program once, and what cannot share a program is refused."""

import dataclasses
import json
import os
import shutil

import chex
import numpy as np
import pytest

from helpers import checkpoint_steps, records, sigterm_after
from jaxrec.config import SOURCES
from jaxrec.errors import InputError
from jaxrec.run.checkpoints import checkpoint_dir, load_trained
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.studies.study import StudySpec, programs, run_study
from jaxrec.training import loop as train_lib
from jaxrec.core import parallel
from jaxrec.training.loop import check_group, train_and_evaluate, train_group


def _members(config, tmp_path, seeds):
    return [config.replace(seed=seed, workdir=str(tmp_path / f"seed_{seed}")) for seed in seeds]


def _params(workdir):
    return load_trained(workdir, "latest").params


@pytest.mark.slow  # two whole runs and a program of two
def test_each_seed_of_a_program_is_its_plain_run_bit_for_bit(small_config, tmp_path):
    # With BatchNorm: each member's running statistics are its own, from the global batch of its devices.
    configs = _members(small_config.replace(epochs=2, num_devices=2, augment=True, norm="batch"), tmp_path, (0, 1))
    train_group(configs)
    plain = configs[1].replace(workdir=str(tmp_path / "plain"))
    train_and_evaluate(plain, plain.workdir)
    assert records(tmp_path / "seed_1") == records(tmp_path / "plain")
    seed_1, alone = (load_trained(tmp_path / name, "latest").variables for name in ("seed_1", "plain"))
    assert "batch_stats" in seed_1
    chex.assert_trees_all_equal(seed_1, alone)
    assert records(tmp_path / "seed_0") != records(tmp_path / "seed_1")  # two models, not one twice
    summary = json.loads((tmp_path / "seed_1" / "summary.json").read_text())
    assert summary["seeds_per_program"] == 2 and summary["source_seeds"]["init"] == 1
    assert summary["model_axis"] == "loop" and json.loads((tmp_path / "plain" / "summary.json").read_text())[
        "model_axis"] is None  # how the program held its models: vmap rounds differently
    assert summary["xla_flags"] == os.environ.get("XLA_FLAGS", "")
    assert (tmp_path / "seed_0" / "eval.json").exists() and (tmp_path / "seed_0" / "curves.png").exists()


@pytest.mark.slow
def test_vmap_over_the_model_axis_differs_from_the_plain_run_only_by_rounding(small_config, tmp_path):
    configs = _members(small_config.replace(epochs=2), tmp_path, (0, 1))
    train_group(configs, model_axis="vmap")
    plain = configs[1].replace(workdir=str(tmp_path / "plain"))
    train_and_evaluate(plain, plain.workdir)
    chex.assert_trees_all_close(_params(tmp_path / "seed_1"), _params(tmp_path / "plain"), atol=1e-3, rtol=1e-3)
    grouped, alone = records(tmp_path / "seed_1"), records(tmp_path / "plain")
    assert grouped[-1]["train_loss"] == pytest.approx(alone[-1]["train_loss"], rel=1e-3)


@pytest.mark.slow
def test_a_study_whose_seeds_stopped_at_different_steps_keeps_each_ones_progress(small_config, tmp_path,
                                                                                 monkeypatch):
    config = small_config.replace(epochs=2)
    spec = StudySpec(config, seeds=(2, 3), vary=SOURCES)
    sigterm_after(monkeypatch, 20)  # stops at step 20 (epoch 2, step 8 of 12)
    with pytest.raises(TrainingInterrupted, match="2 seeds saved"):
        run_study(spec, tmp_path, seeds_per_program=2)
    monkeypatch.undo()
    # As if the process had died after seed 2's save at step 20 and before seed 3's: seed 3 has step 12.
    shutil.move(checkpoint_dir(tmp_path / "seed_3") / "20", tmp_path / "lost")
    configs = [spec.seed_config(seed, tmp_path) for seed in spec.seeds]
    with pytest.raises(InputError, match=r"different steps \(seed_2: 20, seed_3: 12\); train them one at a time"):
        train_group(configs)  # one program cannot hold them: refused, nothing moved
    assert checkpoint_steps(tmp_path / "seed_2") == [12, 20]
    run_study(spec, tmp_path, seeds_per_program=2)  # the study trains each from its own step
    for seed in (2, 3):
        straight = configs[0].replace(seed=seed, workdir=str(tmp_path / f"straight_{seed}"))
        train_and_evaluate(straight, straight.workdir)
        assert records(tmp_path / f"seed_{seed}") == records(straight.workdir)
        chex.assert_trees_all_equal(_params(tmp_path / f"seed_{seed}"), _params(straight.workdir))


@pytest.mark.slow
def test_a_study_with_seeds_per_program_equals_one_at_a_time_and_compiles_each_program_once(
        small_config, tmp_path, monkeypatch):
    programs_built, real = [], train_lib.make_program  # every program the loop ran, and the calls it got

    def make_program(*args, **kwargs):
        program, calls = real(*args, **kwargs), []
        programs_built.append((program, calls))

        def fn(state, images, labels, indices, rng):
            calls.append(indices.shape)
            return program.fn(state, images, labels, indices, rng)

        return dataclasses.replace(program, fn=fn)

    monkeypatch.setattr(train_lib, "make_program", make_program)
    spec = StudySpec(small_config, seeds=(0, 1, 2, 3, 4), vary=("init",))
    grouped = run_study(spec, tmp_path / "grouped", seeds_per_program=2)  # programs of 2, 2, then 1 model
    assert [program.models for program, _ in programs_built] == [2, 2, 1]
    (first, first_calls), (second, second_calls) = programs_built[:2]
    # The second group runs the first's function (one object: make_program is cached) with calls of
    # the shapes it was compiled for, so JAX's cache compiles each program once.
    assert second.fn is first.fn and set(second_calls) == set(first_calls)
    monkeypatch.undo()
    one_at_a_time = run_study(spec, tmp_path / "single")
    assert grouped["metrics"] == one_at_a_time["metrics"]
    assert grouped["disagreement"]["values"] == one_at_a_time["disagreement"]["values"]
    assert grouped["seeds_per_program"] == [2, 2, 2, 2, 1] and one_at_a_time["seeds_per_program"] == [1] * 5
    assert grouped["model_axis"] == ["loop"] * 4 + [None]
    assert grouped["num_devices"] == [1] * 5


def test_what_cannot_share_a_program_is_refused_in_one_line(small_config, tmp_path):
    configs = _members(small_config, tmp_path, (0, 1))
    with pytest.raises(InputError, match="share every setting but their seeds; learning_rate differ"):
        check_group([configs[0], configs[1].replace(learning_rate=0.5)])
    with pytest.raises(InputError, match="need a workdir each"):
        check_group([configs[0], configs[1].replace(workdir=configs[0].workdir)])
    (tmp_path / "faces" / "ann").mkdir(parents=True)  # classes, no split folders: the split is drawn per seed
    faces = [c.replace(dataset=str(tmp_path / "faces")) for c in configs]
    with pytest.raises(InputError, match="no split folders.*--seeds_per_program 1"):
        check_group(faces)
    assert check_group([c.replace(split_seed=7) for c in faces]) is not None  # one split: fine
    with pytest.raises(InputError, match="--model_axis 'pmap': choose one of loop, vmap"):
        check_group(configs, "pmap")
    with pytest.raises(InputError, match="no split folders"):
        run_study(StudySpec(faces[0].replace(workdir=None), seeds=(0, 1), vary=SOURCES), tmp_path / "s",
                  seeds_per_program=2)
    assert not (tmp_path / "s" / "seed_0").exists()
    assert np.array_equal(parallel.split_over_devices(np.arange(24).reshape(1, 2, 12), 3)[1, 0],
                          [[4, 5, 6, 7], [16, 17, 18, 19]])  # device 1 takes the second slice of each model's batch


def test_only_seeds_at_the_same_checkpoint_step_share_a_program(tmp_path):
    for seed, steps in {0: [12], 1: [12], 3: [12, 24]}.items():
        for step in steps:
            (checkpoint_dir(tmp_path / f"seed_{seed}") / str(step)).mkdir(parents=True)
    (checkpoint_dir(tmp_path / "seed_4") / "24.orbax-checkpoint-tmp-1").mkdir(parents=True)  # an unfinished save
    assert programs([0, 1, 2, 3, 4, 5], tmp_path, 2) == [[3], [0, 1], [2, 4], [5]]
    assert programs([0, 1, 2], tmp_path, 1) == [[0], [1], [2]]
