"""Model state end to end (jaxrec.core.state): BatchNorm's statistics are trained over the global batch,
used by evaluation and prediction, checkpointed, resumed bit for bit, and never silently reset."""

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import PRE, SMALL, as_split, random_batch, records, sigterm_after, small_state
from jaxrec.run.checkpoints import RunCheckpointer, Trained, checkpoint_dir, load_trained
from jaxrec.config import Config, check
from jaxrec.errors import InputError
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.runtime.interrupt import TrainingInterrupted
from jaxrec.models import count_params
from jaxrec.models.cnn import ArticleCNN
from jaxrec.core.parallel import make_program, replicate, select_devices, split_over_devices, unreplicate
from jaxrec.evaluation.predict import Predictor
from jaxrec.core.run_state import RunState
from jaxrec.core.steps import train_step
from jaxrec.training.loop import train_and_evaluate

BN = dict(SMALL, norm="batch")
# The model of Config(**BN) without a device axis (norm_axis None): for references under plain jit.
SMALL_BN_MODEL = ArticleCNN(num_classes=10, conv_features=(8, 16), dense_features=32, norm="batch")


def _bn_state(seed: int = 0):
    return small_state(Config(**BN), seed=seed)


def _train_steps(state, batch, devices, steps: int):
    """`steps` steps on the same global batch (its examples in order), through the loop's pmapped step."""
    fn = make_program(PRE, devices).fn
    order = np.tile(np.arange(len(batch["label"]), dtype=np.int32), (steps, 1))
    state, _ = fn(replicate(state, devices), replicate(np.asarray(batch["image"]), devices),
                  replicate(np.asarray(batch["label"]), devices), split_over_devices(order, len(devices)),
                  jax.random.key(1))
    return unreplicate(state)


def test_the_batchnorm_cnn_has_running_statistics_and_convolutions_without_bias():
    state, plain = (jax.eval_shape(lambda c=c: small_state(Config(**c))) for c in (BN, SMALL))  # shapes only
    assert set(state.model_state) == {"batch_stats"} and plain.model_state == {}
    stats = state.model_state["batch_stats"]
    assert [stats[f"BatchNorm_{i}"]["mean"].shape for i in range(2)] == [(8,), (16,)]
    assert "bias" not in state.params["Conv_0"] and "bias" in plain.params["Conv_0"]
    # Each conv loses its bias (8 + 16) and each BatchNorm brings a scale and a bias.
    assert count_params(state.params) == count_params(plain.params) - (8 + 16) + 2 * (8 + 16)


def test_running_statistics_are_those_of_the_global_batch_on_8_devices():
    state, batch = _bn_state(), random_batch(64, seed=3)
    stepped = _train_steps(state, batch, select_devices(8), steps=1)
    # Reference: the same model without a device axis, in train mode on all 64 images at once.
    model = SMALL_BN_MODEL
    images = PRE.train(batch["image"], batch["index"], jax.random.key(1), 0)

    def stats_of(x):
        return model.apply(state.variables, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]

    chex.assert_trees_all_close(stepped.model_state["batch_stats"], stats_of(images), rtol=1e-5, atol=1e-6)
    one_device_share = stats_of(images[:8])  # what per-device statistics would have been
    assert not np.allclose(stepped.model_state["batch_stats"]["BatchNorm_0"]["mean"],
                           one_device_share["BatchNorm_0"]["mean"], rtol=1e-3)


def test_1_and_8_devices_agree_with_batchnorm_after_a_few_steps():
    state, batch = _bn_state(), random_batch(64, seed=4)
    one = _train_steps(state, batch, select_devices(1), steps=3)
    eight = _train_steps(state, batch, select_devices(8), steps=3)
    # 1e-6 of a bias of 3e-4 is a batch of 64 split 8 ways, summed in another order by the matmuls.
    chex.assert_trees_all_close(eight.params, one.params, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(eight.model_state, one.model_state, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_pure_step_trains_a_batchnorm_model_on_one_device_without_an_axis():
    model = ArticleCNN(num_classes=10, conv_features=(8,), dense_features=16, norm="batch")
    state = small_state(Config(**BN))
    state = state.replace(apply_fn=model.apply, **_fresh(model))
    new_state, metrics = jax.jit(lambda s, b: train_step(s, b, jax.random.key(0), preprocess=PRE, axis_name=None))(
        state, random_batch(16))
    assert np.isfinite(metrics["loss"]) and int(new_state.step) == 1
    assert not np.allclose(new_state.model_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


def _fresh(model):
    """The params, model state and optimizer state of `model` freshly initialised (one conv block)."""
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params = variables["params"]
    tx = small_state(Config(**BN)).tx
    return {"params": params, "model_state": {"batch_stats": variables["batch_stats"]}, "opt_state": tx.init(params)}


def _trained_bn_state():
    """A BatchNorm state after 4 steps: running statistics far from their initial 0 and 1."""
    return _train_steps(_bn_state(), random_batch(64, seed=5), select_devices(8), steps=4)


def test_evaluation_and_prediction_use_the_running_statistics():
    state = _trained_bn_state()
    data = random_batch(40, seed=6)
    images, labels = np.asarray(data["image"]), np.asarray(data["label"])
    x = PRE.eval(data["image"])
    running = np.asarray(state.apply_fn(state.variables, x, train=False))
    batch_stats_logits, _ = SMALL_BN_MODEL.apply(state.variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(running, batch_stats_logits, atol=1e-3)  # the two modes tell apart
    devices = select_devices(8)
    result = Evaluator(state.apply_fn, as_split(images, labels), PRE, devices, 16)(replicate(state.eval_variables, devices))
    expected_loss = float(np.mean(-jax.nn.log_softmax(running)[np.arange(40), labels]))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["accuracy"] == pytest.approx(float(np.mean(running.argmax(-1) == labels)))
    trained = Trained(config=check(Config(**BN)), variables=state.eval_variables, step=4, epoch=0,
                      dataset={"class_names": [str(c) for c in range(10)], "image_shape": [32, 32, 3],
                               "mean": list(PRE.mean), "std": list(PRE.std)}, test_accuracy=None)
    np.testing.assert_allclose(Predictor(trained, batch_size=16).logits(images), running, rtol=1e-5, atol=1e-5)


def test_evaluation_applies_the_averaged_weights_when_the_state_keeps_them():
    state = _trained_bn_state()
    averaged = jax.tree_util.tree_map(lambda x: 0.5 * x, state.variables)
    chex.assert_trees_all_equal(state.eval_variables, state.variables)  # nothing averaged: the trained ones
    assert state.replace(averaged=averaged).eval_variables is averaged
    # The evaluator scores whatever eval_variables holds: halved weights score differently.
    data = random_batch(40, seed=7)
    devices = select_devices(8)
    evaluate = Evaluator(state.apply_fn, as_split(data["image"], data["label"]), PRE, devices, 16)
    assert (evaluate(replicate(state.replace(averaged=averaged).eval_variables, devices))["loss"]
            != evaluate(replicate(state.eval_variables, devices))["loss"])


def test_a_diverged_model_state_is_never_saved(tmp_path):
    state = _trained_bn_state()
    stats = state.model_state["batch_stats"]
    bad = {**stats, "BatchNorm_0": {**stats["BatchNorm_0"], "var": stats["BatchNorm_0"]["var"] * jnp.nan}}
    checkpoints = RunCheckpointer(tmp_path, check(Config(**BN)))
    with pytest.raises(FloatingPointError, match="NaN or inf at step 4; no checkpoint was written"):
        checkpoints.save(state.replace(model_state={"batch_stats": bad}), RunState(step=4), DATA)
    checkpoints.close()


def test_a_checkpoint_holds_the_statistics_and_the_averaged_weights(tmp_path):
    config = check(Config(**BN))
    state = _trained_bn_state()
    state = state.replace(averaged=jax.tree_util.tree_map(lambda x: x + 1.0, state.variables))
    checkpoints = RunCheckpointer(tmp_path, config)
    checkpoints.save(state, RunState(step=4), DATA)
    checkpoints.close()
    restored = RunCheckpointer(tmp_path, config).restore_latest(state, DATA)
    assert restored.meta.items == ["averaged", "model_state/batch_stats", "opt_state", "params", "step"]
    chex.assert_trees_all_equal(restored.state.model_state, state.model_state)
    chex.assert_trees_all_equal(restored.state.averaged, state.averaged)


def test_a_checkpoint_without_the_statistics_the_model_needs_is_refused_in_one_line(tmp_path):
    config = check(Config(**BN))
    state = _trained_bn_state()
    checkpoints = RunCheckpointer(tmp_path, config)
    checkpoints.save(state.replace(model_state={}), RunState(step=4), DATA)  # as if written without them
    checkpoints.close()
    with pytest.raises(InputError, match=r"lacks model_state/batch_stats, which the model needs") as refused:
        RunCheckpointer(tmp_path, config).restore_latest(state, DATA)
    assert "\n" not in str(refused.value) and "--resume=false" in str(refused.value)
    with pytest.raises(InputError, match=r"lacks model_state/batch_stats"):
        load_trained(tmp_path, "latest")  # evaluation and prediction refuse it too


DATA = {"name": "random", "class_names": [str(c) for c in range(10)], "image_shape": [32, 32, 3],
        "mean": list(PRE.mean), "std": list(PRE.std), "train_examples": 64, "eval_examples": 40}


@pytest.mark.slow
def test_a_batchnorm_run_stopped_by_sigterm_resumes_bit_for_bit(monkeypatch, tmp_path):
    # 2 epochs of 12 steps on 2 devices, with augmentation: straight, and stopped after step 8
    config = Config(dataset="cifar10_sample", epochs=2, batch_size=32, num_devices=2, progress=False,
                    steps_per_call=4, augment=True, **BN)
    straight_dir = tmp_path / "straight"
    straight = train_and_evaluate(config, straight_dir)
    sigterm_after(monkeypatch, 8)
    with pytest.raises(TrainingInterrupted):
        train_and_evaluate(config, tmp_path / "run")
    monkeypatch.undo()
    shutil.copytree(tmp_path / "run", tmp_path / "dropped")
    resumed = train_and_evaluate(config, tmp_path / "run")
    chex.assert_trees_all_equal(resumed.variables, straight.variables)
    chex.assert_trees_all_equal(resumed.opt_state, straight.opt_state)
    assert records(tmp_path / "run") == records(straight_dir)

    # The checkpoint at the stop holds the statistics, and a resume without them would differ:
    # rewrite it with the statistics at their initial values and resume from that.
    checkpoints = RunCheckpointer(tmp_path / "dropped", config)
    restored = checkpoints.restore_latest(resumed, _described(straight_dir))
    assert "model_state/batch_stats" in restored.meta.items and restored.meta.run.step == 8
    stats = restored.state.model_state["batch_stats"]
    assert not np.allclose(stats["BatchNorm_0"]["mean"], 0.0)
    checkpoints.close()
    shutil.rmtree(checkpoint_dir(tmp_path / "dropped") / "8")
    checkpoints = RunCheckpointer(tmp_path / "dropped", config)
    initial = small_state(config).model_state  # mean 0, var 1
    checkpoints.save(restored.state.replace(model_state=initial), restored.meta.run,
                     _described(straight_dir))
    checkpoints.close()
    without = train_and_evaluate(config, tmp_path / "dropped")
    assert not np.allclose(without.model_state["batch_stats"]["BatchNorm_0"]["var"],
                           straight.model_state["batch_stats"]["BatchNorm_0"]["var"])
    assert records(tmp_path / "dropped")[-1]["test_loss"] != records(straight_dir)[-1]["test_loss"]


def _described(workdir):
    return json.loads((workdir / "dataset.json").read_text())
