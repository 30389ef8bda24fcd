"""airbench94 end to end through the loop: the command line's recipe, a fractional schedule that
resumes, test-time augmentation in the run's scores, evaluate and predict, bfloat16, and seeds
trained side by side."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from helpers import ROOT, records as read_metrics, run_script, sigterm_after
from jaxrec.cli import flags
from jaxrec.cli.commands import build_parser, model_defaults
from jaxrec.config import Config, check, refuse
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import evaluate_trained
from jaxrec.evaluation.predict import Predictor
from jaxrec.models import config_for, create_model
from jaxrec.run.checkpoints import field_differences, load_trained
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.models.recipes import recipe_problems
from jaxrec.training.loop import train_and_evaluate

# airbench94's recipe on a narrow network and the shipped sample (400 training images: 12 steps of 32).
TINY = dict(dataset="cifar10_sample", conv_features=(8, 16, 16), batch_size=32, whiten_images=100, num_devices=1,
            progress=False, steps_per_call=2, eval_batch_size=50, whiten_bias_epochs=1)


def tiny(**changes) -> Config:
    return config_for("airbench94", **{**TINY, **changes})


def test_the_command_line_runs_the_whole_recipe_and_flags_still_win():
    args = build_parser(model_defaults(["train", "--model", "airbench94"])).parse_args(
        ["train", "--model", "airbench94", "--tta", "0", "--epochs", "2"])
    assert flags.config_of(args) == config_for("airbench94", tta=0, epochs=2)
    plain = build_parser(model_defaults(["train"])).parse_args(["train"])
    assert Config(**flags.values_of(plain, Config)) == Config()


def test_help_shows_the_recipe_of_the_model_asked_for(capsys):
    for argv, shown, own in ((["train", "--model", "airbench94", "--help"], "(default: 9.9)", True),
                             (["train", "--help"], "(default: 10)", False)):
        with pytest.raises(SystemExit):
            build_parser(model_defaults(argv)).parse_args(argv)
        out = capsys.readouterr().out
        assert "--lookahead" in out and "--tta" in out and "--translate" in out
        assert ("--whiten " in out) is own  # airbench94's own knob
        start = out.index("\n  --epochs")
        epochs_help = out[start:out.index("\n  --", start + 1)]
        assert shown in " ".join(epochs_help.split())


@pytest.mark.parametrize("changes,message", [
    (dict(warmup_epochs=1, warmup_fraction=0.2), "--warmup_epochs with --warmup_fraction"),
    (dict(final_lr_fraction=0.1), "--final_lr_fraction with --lr_schedule constant"),
    (dict(augment=True, flip="random"), "--augment with --translate or --flip"),
    (dict(norm_bias_lr_scale=8), "--norm_bias_lr_scale with --model cnn --norm none: the model has no BatchNorm"),
    (dict(dtype="bfloat16"), "--dtype bfloat16 with --model cnn"),
])
def test_recipe_knobs_that_do_not_fit_the_model_are_refused(changes, message):
    with pytest.raises(InputError, match=message):
        refuse(recipe_problems(check(Config(**changes))))


def test_images_too_small_for_the_pools_are_refused_in_one_line_before_training(tmp_path):
    with pytest.raises(InputError, match=r"^--image_size 24: .*at least 25x25 pixels: pass --image_size 25"):
        refuse(recipe_problems(tiny(image_size=24)))
    # The sample's own 32x32 images are known once its files are opened: four groups need 49x49.
    with pytest.raises(InputError, match=r"^--dataset cifar10_sample: 32x32 images .* at least 49x49 pixels"):
        train_and_evaluate(tiny(conv_features=(8, 8, 8, 8)), tmp_path / "four_groups")
    assert not (tmp_path / "four_groups" / "checkpoints").exists()


@pytest.mark.parametrize("changes,fix", [(dict(epochs=0.25), "pass --epochs 0.417 or more, --lookahead_every 3 or less"),
                                         (dict(epochs=1, lookahead_every=13), "--lookahead_every 12 or less")])
def test_a_run_shorter_than_its_lookahead_period_is_refused_before_training(tmp_path, changes, fix):
    """Its average would never be updated, and the network, set to it at the end, would be the
    initial one: chance accuracy, reported as the result. (12 steps per epoch.)"""
    with pytest.raises(InputError, match=rf"fewer than --lookahead_every .*initial network; .*{fix}"):
        train_and_evaluate(tiny(**changes), tmp_path)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_the_airbench_script_with_another_model_names_only_the_flags_given(capsys):
    """The script's recipe defaults (its knobs, --norm_bias_lr_scale) do not apply to a model without
    those layers; only what the user passed is refused, and airbench94's own knobs are its flags only."""
    recipe = config_for("airbench94")
    cnn = flags.parse_config(["--model", "cnn"], None, recipe)
    assert check(cnn).knobs == () and cnn.norm_bias_lr_scale == 1 and cnn.learning_rate == recipe.learning_rate
    with pytest.raises(InputError) as refused:
        refuse(recipe_problems(check(flags.parse_config(["--model", "cnn", "--norm_bias_lr_scale", "8"], None,
                                                        recipe))))
    assert str(refused.value).startswith("--norm_bias_lr_scale with --model cnn")
    with pytest.raises(SystemExit):
        flags.parse_config(["--model", "cnn", "--whiten", "--logit_scale", "0.5"], None, recipe)
    assert "--whiten is a setting of --model airbench94" in capsys.readouterr().err
    resnet = flags.parse_config(["--model", "resnet20"], None, recipe)  # has BatchNorm: the recipe's scale applies
    assert check(resnet).norm_bias_lr_scale == recipe.norm_bias_lr_scale and resnet.knobs == ()
    assert dict(flags.parse_config(["--whiten", "false"], None, recipe).knobs)["whiten"] is False


def test_runs_recorded_while_airbench94s_settings_were_shared_ones_load_as_its_knobs():
    """results/ holds config.json files from before --whiten and the rest became airbench94's knobs:
    airbench94's read them as its knobs, what a resume compares is unchanged, and another model's
    (a recipe file's, where they sat at their off values) has no knobs."""
    saved = json.loads((ROOT / "results" / "airbench94" / "jaxrec_full_seed0" / "config.json").read_text())
    config = Config.from_dict(saved)
    assert dict(config.knobs) == {name: saved[name] for name in
                                  ("whiten", "whiten_images", "whiten_bias_epochs", "dirac_init", "logit_scale")}
    assert config.knobs == config_for("airbench94").knobs and create_model(config, 10).logit_scale == saved["logit_scale"]
    assert field_differences(saved, config.to_dict(), ()) == []
    assert field_differences(saved, config.replace(knobs=(("whiten", False),)).to_dict(), ()) != []
    vit = json.loads((ROOT / "results" / "vit" / "cifar10_vit_seed0" / "config.json").read_text())
    assert vit["whiten"] is False and Config.from_dict(vit).knobs == ()


@pytest.mark.slow
def test_a_fractional_schedule_trains_resumes_and_scores_with_tta(tmp_path, monkeypatch):
    """1.5 epochs = 18 steps (the last epoch half long); a run stopped inside that last epoch and
    resumed ends exactly where the straight run does. The run's scores are with test-time
    augmentation, the per-epoch ones without; evaluate reports both; predict uses it."""
    straight = train_and_evaluate(tiny(epochs=1.5), tmp_path / "straight")
    assert int(straight.step) == 18
    with monkeypatch.context() as patched:
        sigterm_after(patched, 16)  # step 16: four steps into the second epoch
        with pytest.raises(TrainingInterrupted):
            train_and_evaluate(tiny(epochs=1.5), tmp_path / "resumed")
    resumed = train_and_evaluate(tiny(epochs=1.5), tmp_path / "resumed")
    for a, b in zip(jax.tree_util.tree_leaves(resumed.variables), jax.tree_util.tree_leaves(straight.variables)):
        np.testing.assert_array_equal(a, b)
    # The network ends as the lookahead average.
    for a, b in zip(jax.tree_util.tree_leaves(straight.variables), jax.tree_util.tree_leaves(straight.averaged)):
        np.testing.assert_array_equal(a, b)
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    records = read_metrics(tmp_path / "straight")
    assert [r["step"] for r in records] == [12, 18] and summary["steps"] == 18 and summary["tta"] == 2
    assert summary["test_accuracy_without_tta"] == records[-1]["test_accuracy"]
    assert summary["test_loss"] != summary["test_loss_without_tta"]  # the final scores did average the views
    assert summary["train_images_per_second"] > 0
    evaluated = json.loads((tmp_path / "straight" / "eval.json").read_text())
    assert evaluated["accuracy"] == summary["test_accuracy"] and evaluated["without_tta"]["accuracy"] == \
        summary["test_accuracy_without_tta"]

    trained = load_trained(tmp_path / "straight", "latest")
    report = evaluate_trained(trained)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert report["without_tta"]["accuracy"] == pytest.approx(summary["test_accuracy_without_tta"])
    assert "without_tta" not in evaluate_trained(trained, trained.config.replace(tta=0))

    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with_level = lambda tta: dataclasses.replace(trained, config=trained.config.replace(tta=tta))  # noqa: E731
    assert not np.allclose(Predictor(trained).logits(images), Predictor(with_level(0)).logits(images))
    mirrored = Predictor(with_level(1))  # level 1 averages the image and its mirror: a mirror changes nothing
    np.testing.assert_allclose(mirrored.logits(images), mirrored.logits(images[:, :, ::-1]), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def airbench_study(tmp_path_factory):
    """`jaxrec study --model airbench94 --seeds 0-1`, both seeds in one program (seeds side by side:
    train_group), and each seed's plain run with the same settings, seed 0's from the experiment script,
    all on 2 devices: what the tests below compare. Shared because each run compiles its own airbench94 programs, the
    study's for two models. Returns the workdir, the script's process and each plain run's variables."""
    from jaxrec.cli.commands import main

    workdir = tmp_path_factory.mktemp("airbench_study")
    small = ["--dataset", "cifar10_sample", "--epochs", "1", "--conv_features", "8,16,16", "--batch_size", "32",
             "--whiten_images", "100", "--num_devices", "2", "--progress", "false",
             "--steps_per_call", "2"]  # 12 steps: 6 calls of a short unrolled loop, quick to compile for 2 models
    assert main(["study", "--model", "airbench94", "--seeds", "0-1", "--seeds_per_program", "2",
                 "--workdir", str(workdir / "study"), *small]) == 0
    plain_flags = ["--whiten_bias_epochs", "3", "--eval_batch_size", "1000"]
    script = run_script("experiments/airbench94.py", *small, *plain_flags, "--seed", "0",
                        "--workdir", workdir / "plain0")
    if script.returncode != 0:
        pytest.fail(f"experiments/airbench94.py failed: {script.stderr[-3000:]}")
    plain = {0: load_trained(workdir / "plain0", "latest").variables,
             1: train_and_evaluate(tiny(epochs=1, seed=1, whiten_bias_epochs=3, eval_batch_size=1000, num_devices=2),
                                   workdir / "plain1").eval_variables}
    return workdir, script, plain


@pytest.mark.slow
def test_bfloat16_steps_stay_finite_and_close_to_float32(airbench_study, tmp_path):
    # float32: the study's plain run of seed 0; the same training but the dtype (tta=0 changes only
    # the final evaluation, which this test does not read: one program less to compile).
    workdir, _, plain = airbench_study
    state = train_and_evaluate(tiny(epochs=1, seed=0, whiten_bias_epochs=3, eval_batch_size=1000, tta=0,
                                    dtype="bfloat16", num_devices=2), tmp_path / "bfloat16")
    for variables in (state.variables, plain[0]):  # params and batch_stats
        assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(variables))
    losses = {name: [r["train_loss"] for r in read_metrics(path)]
              for name, path in (("bfloat16", tmp_path / "bfloat16"), ("float32", workdir / "plain0"))}
    assert np.all(np.isfinite(losses["bfloat16"]))
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)


@pytest.mark.slow
def test_seeds_side_by_side_equal_their_plain_runs(airbench_study):
    workdir, _, plain = airbench_study
    for seed in (0, 1):
        member = load_trained(workdir / "study" / f"seed_{seed}", "latest")
        leaves = zip(jax.tree_util.tree_leaves(member.variables), jax.tree_util.tree_leaves(plain[seed]), strict=True)
        for a, b in leaves:
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_experiment_script_runs_airbench(airbench_study):
    workdir, script, _ = airbench_study
    assert script.returncode == 0, script.stderr
    summary = json.loads((workdir / "plain0" / "summary.json").read_text())
    assert summary["config"]["model"] == "airbench94" and summary["config"]["lookahead"] and summary["tta"] == 2


@pytest.mark.slow
def test_a_seed_study_of_airbench(airbench_study):
    """The study's scores are the runs' (with test-time augmentation) and each seed is its plain run."""
    workdir, _, plain = airbench_study
    study = json.loads((workdir / "study" / "study.json").read_text())
    summaries = [json.loads((workdir / "study" / f"seed_{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert study["seeds"] == [0, 1]
    assert study["metrics"]["test_accuracy"]["mean"] == pytest.approx(np.mean([s["test_accuracy"] for s in summaries]))
    assert all(s["tta"] == 2 and s["config"]["lookahead"] for s in summaries)
    member = load_trained(workdir / "study" / "seed_1", "latest")
    for a, b in zip(jax.tree_util.tree_leaves(member.variables), jax.tree_util.tree_leaves(plain[1]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_network_alone_without_its_recipe_is_warned_about(caplog):
    from jaxrec.runtime.setup import warn_if_recipe_left_out

    with caplog.at_level("WARNING", logger="jaxrec"):
        warn_if_recipe_left_out(Config(model="airbench94"))
        warn_if_recipe_left_out(config_for("airbench94", tta=0))
        warn_if_recipe_left_out(Config())
    assert len(caplog.records) == 1 and "config_for('airbench94')" in caplog.records[0].getMessage()
