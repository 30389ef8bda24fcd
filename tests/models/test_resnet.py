"""The ResNet family (jaxrec.models.resnet): shapes and parameter counts of the published networks,
the shortcuts, and short runs that train, resume and evaluate through the loop."""

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import records
from jaxrec.config import Config, check
from jaxrec.models import count_params, create_model
from jaxrec.models.resnet import BasicBlock, Norm
from jaxrec.run.checkpoints import checkpoint_dir, load_trained
from jaxrec.training.loop import train_and_evaluate


def _variables(name: str, classes: int = 10):
    model = create_model(check(Config(model=name)), classes)
    return model, jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


@pytest.mark.parametrize("name,params", [("resnet18", 11_173_962), ("resnet20", 269_722)])
def test_parameter_counts_are_the_published_ones(name, params):
    _, variables = _variables(name)
    assert count_params(variables["params"]) == params
    assert "batch_stats" in variables


def test_resnet20_has_three_stages_of_three_blocks_and_identity_shortcuts():
    _, variables = _variables("resnet20")
    blocks = [k for k in variables["params"] if k.startswith("BasicBlock_")]
    assert len(blocks) == 9
    # Option A: no block has a third (1x1 projection) convolution.
    assert all(set(variables["params"][b]) == {"Conv_0", "Conv_1", "BatchNorm_0", "BatchNorm_1"} for b in blocks)
    assert variables["params"]["BasicBlock_8"]["Conv_1"]["kernel"].shape == (3, 3, 64, 64)
    model18, variables18 = _variables("resnet18")
    assert "Conv_2" in variables18["params"]["BasicBlock_2"]  # resnet18 projects where the shape changes


def test_the_zero_padded_shortcut_subsamples_and_pads_the_channels():
    block = BasicBlock(features=8, stride=2, shortcut="pad", norm=Norm())
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    variables = block.init(jax.random.key(0), x, train=False)
    # With the residual branch zeroed (BN scale 0), the block is relu(shortcut(x)).
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if "BatchNorm_1" in jax.tree_util.keystr(path) and "scale" in
        jax.tree_util.keystr(path) else v, variables)
    out = block.apply(zeroed, x, train=False)
    expected = jnp.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (2, 2)))
    chex.assert_trees_all_close(out, jax.nn.relu(expected), atol=1e-6)


@pytest.mark.slow
def test_logits_have_the_classes_and_train_mode_updates_the_statistics():
    model = create_model(check(Config(model="resnet20")), 7).clone(norm=Norm())  # no device axis: plain jit
    x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    chex.assert_shape(logits, (4, 7))
    assert not np.allclose(updates["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


@pytest.mark.slow
def test_resnet20_trains_resumes_and_evaluates(small_config, tmp_path):
    config = small_config.replace(model="resnet20", conv_features=Config.conv_features, epochs=1,
                                  dense_features=Config.dense_features, checkpoint_keep=5, num_devices=2,
                                  steps_per_call=1, checkpoint_every_steps=6)  # one copy of the step to compile
    straight = train_and_evaluate(config, tmp_path / "straight")
    assert int(straight.step) == 12 and np.isfinite(records(tmp_path / "straight")[-1]["test_loss"])
    # The run as if it had died after its mid-epoch save: a copy without the later checkpoint.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(checkpoint_dir(tmp_path / "resumed") / "12")
    resumed = train_and_evaluate(config, tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "summary.json").read_text())["resumed_from_step"] == 6
    chex.assert_trees_all_equal(resumed.variables, straight.variables)
    ends = [records(tmp_path / w)[-1] for w in ("resumed", "straight")]
    assert [(r["step"], r["test_loss"], r["test_accuracy"]) for r in ends] == [(12, ends[1]["test_loss"],
                                                                                  ends[1]["test_accuracy"])] * 2
    trained = load_trained(tmp_path / "straight", "latest")
    assert set(trained.variables) == {"params", "batch_stats"} and (checkpoint_dir(tmp_path / "straight")).is_dir()
