"""Numerics of the pure steps, and their data-parallel wrappers on 8 fake CPU devices."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from helpers import PRE, SMALL, as_split, random_batch, small_state
from jaxrec.models import config_for, kernels
from jaxrec.config import Config
from jaxrec.core.pipeline import Preprocess, eval_indices
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.core.parallel import make_program, replicate, select_devices, split_over_devices, unreplicate
from jaxrec.core.steps import cross_entropy, eval_step, train_step

def test_cross_entropy_equals_hand_computed_log_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
    labels = np.array([0, 4, 2, 2, 1, 3])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(6), labels]
    np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-5)
    # Label smoothing: targets (1 - a) on the label plus a / K everywhere.
    a = 0.1
    targets = np.full((6, 5), a / 5) + (1 - a) * np.eye(5)[labels]
    np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), jnp.asarray(labels), a),
                               -(targets * log_softmax).sum(axis=1), rtol=1e-5)


def test_train_step_loss_is_the_batch_mean_and_gradients_are_finite():
    state = small_state()
    batch = random_batch(16)
    new_state, metrics = jax.jit(functools.partial(train_step, preprocess=PRE, axis_name=None))(
        state, batch, jax.random.key(1))
    reference_loss = lambda p: cross_entropy(state.apply_fn({"params": p}, PRE.eval(batch["image"])),
                                             batch["label"]).mean()
    np.testing.assert_allclose(metrics["loss"], jax.jit(reference_loss)(state.params), rtol=1e-5)
    grads = jax.jit(jax.grad(reference_loss))(state.params)
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_equal_shapes(grads, state.params)
    assert int(new_state.step) == 1
    # SGD with momentum, first step: params move by -lr * grad.
    lr = Config().learning_rate
    chex.assert_trees_all_close(new_state.params, jax.tree.map(lambda p, g: p - lr * g, state.params, grads),
                                rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tiny_batch_is_overfit():
    config = Config(**SMALL, learning_rate=0.05)
    state = small_state(config)
    batch = random_batch(32, seed=3)
    step = jax.jit(functools.partial(train_step, preprocess=PRE, axis_name=None))
    for _ in range(40):
        state, metrics = step(state, batch, jax.random.key(0))
    logits = state.apply_fn({"params": state.params}, PRE.eval(batch["image"]))
    assert float(jnp.mean(jnp.argmax(logits, -1) == batch["label"])) >= 0.95


# The RNN (a tiny one) trains through the same pmap step as the CNN.
@pytest.mark.parametrize("config", [pytest.param(Config(**SMALL), id="cnn"),
                                    pytest.param(config_for("rnn", rnn_cell="tanh", rnn_hidden=8), id="rnn",
                                                 marks=pytest.mark.slow)])
def test_pmap_over_8_devices_equals_one_device(config):
    assert jax.local_device_count() == 8, "conftest must create 8 fake CPU devices"
    state = small_state(config)
    batch = random_batch(64, seed=5)
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    order = np.arange(64, dtype=np.int32)[None]  # one step over the whole global batch
    results = []
    for n in (1, 8):
        devices = select_devices(n)
        fn = make_program(PRE, devices).fn
        new_state, metrics = fn(replicate(state, devices), replicate(images, devices),
                                replicate(labels, devices), split_over_devices(order, n), jax.random.key(0))
        results.append((unreplicate(new_state).params, float(metrics["loss"][0, 0])))
    chex.assert_trees_all_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("steps_loop", ["unrolled", "rolled"])
def test_several_steps_per_call_equal_one_step_per_call(steps_loop):
    devices = select_devices(2)
    data = random_batch(96, seed=2)
    images, labels = replicate(np.asarray(data["image"]), devices), replicate(np.asarray(data["label"]), devices)
    order = np.random.default_rng(0).permutation(96).astype(np.int32).reshape(3, 32)
    pre = Preprocess(PRE.mean, PRE.std, augment=True)
    fn = make_program(pre, devices, steps_loop=steps_loop).fn
    one = replicate(small_state(), devices)
    for s in range(3):
        one, _ = fn(one, images, labels, split_over_devices(order[s:s + 1], 2), jax.random.key(4))
    many, _ = fn(replicate(small_state(), devices), images, labels, split_over_devices(order, 2), jax.random.key(4))
    if steps_loop == "unrolled":  # the same operations as the one-step program, fused the same way
        chex.assert_trees_all_equal(unreplicate(one).params, unreplicate(many).params)
    else:  # the loop body is compiled on its own: measured 2e-7 relative after 3 steps
        chex.assert_trees_all_close(unreplicate(one).params, unreplicate(many).params, rtol=1e-5, atol=1e-7)


def test_the_steps_loop_knob_reaches_the_train_function():
    """Config.steps_loop passes straight to make_program: 'auto' is the platform's row, the others win."""
    devices = select_devices(2)
    row = kernels.for_platform(devices[0].platform).steps_loop
    other = "rolled" if row == "unrolled" else "unrolled"
    assert make_program(PRE, devices, steps_loop="auto").fn is make_program(PRE, devices, steps_loop=row).fn
    assert make_program(PRE, devices, steps_loop=other).fn is not make_program(PRE, devices, steps_loop=row).fn


def test_two_devices_are_bit_identical_run_to_run():
    """The one-device-per-core layout (2 devices here) is deterministic: the same call twice gives the
    same bits (against one device it differs by float rounding only: test_pmap_over_8_devices...)."""
    devices = select_devices(2)
    data = random_batch(64, seed=3)
    images, labels = replicate(np.asarray(data["image"]), devices), replicate(np.asarray(data["label"]), devices)
    order = np.random.default_rng(1).permutation(64).astype(np.int32).reshape(2, 32)
    fn = make_program(PRE, devices).fn
    runs = [fn(replicate(small_state(), devices), images, labels, split_over_devices(order, 2), jax.random.key(0))
            for _ in range(2)]
    chex.assert_trees_all_equal(unreplicate(runs[0][0]).params, unreplicate(runs[1][0]).params)
    chex.assert_trees_all_equal(runs[0][1], runs[1][1])


def test_train_step_runs_unchanged_under_shard_map():
    state = small_state()
    batch = random_batch(64, seed=6)
    mesh = Mesh(np.array(jax.local_devices()), ("batch",))
    step = functools.partial(train_step, preprocess=PRE, axis_name="batch")
    # check_vma=False gives pmap's semantics: per-device gradients that the step averages itself.
    sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P("batch"), P()), out_specs=(P(), P()),
                                    check_vma=False))
    via_shard_map, _ = sharded(state, batch, jax.random.key(0))
    single, _ = jax.jit(functools.partial(train_step, preprocess=PRE, axis_name=None))(state, batch, jax.random.key(0))
    chex.assert_trees_all_close(via_shard_map.params, single.params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_examples,global_batch",
                         [(1003, 64), (7, 16), pytest.param(128, 128, marks=pytest.mark.slow)])
def test_eval_counts_every_example_exactly_once_on_8_devices(num_examples, global_batch):
    state = small_state()
    data = random_batch(num_examples, seed=7)
    images, labels = np.asarray(data["image"]), np.asarray(data["label"])
    evaluate = Evaluator(state.apply_fn, as_split(images, labels), PRE, select_devices(8), global_batch)
    result = evaluate(replicate(state.variables, select_devices(8)))
    assert result["count"] == num_examples
    # Reference: the whole set in one unpadded batch on one device.
    sums = eval_step(state.variables, {"image": data["image"], "label": data["label"], "mask": jnp.ones(num_examples)},
                     apply_fn=state.apply_fn, preprocess=PRE, axis_name=None)
    np.testing.assert_allclose(result["loss"], float(sums["loss_sum"]) / num_examples, rtol=1e-5)
    logits = state.apply_fn({"params": state.params}, PRE.eval(data["image"]))
    assert result["accuracy"] == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) == data["label"])))


def test_eval_indices_pad_and_mask():
    indices, mask = eval_indices(10, 4)
    assert indices.shape == mask.shape == (3, 4)
    assert sorted(indices[mask == 1].tolist()) == list(range(10))
    assert mask.sum() == 10
