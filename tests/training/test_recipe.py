"""airbench94's recipe through the core: parameter groups, decoupled hyperparameters, the schedule,
the summed loss, lookahead, and the augmentation's views."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import PRE
from jaxrec.config import Config, check
from jaxrec.core.pipeline import Preprocess, mirror
from jaxrec.core.tta import shifted_views, with_tta
from jaxrec.models import config_for, create_model
from jaxrec.core.optim import (create_optimizer, learning_rate_schedule, param_labels, step_hyperparameters,
                                   total_steps)
from jaxrec.core.parallel import make_program, replicate, select_devices, split_over_devices, unreplicate
from jaxrec.core.state import create_train_state
from jaxrec.core.steps import Lookahead, Objective

SMALL_AIRBENCH = dict(conv_features=(8, 16, 16))


def airbench(**changes) -> Config:
    return check(config_for("airbench94", **{**SMALL_AIRBENCH, **changes}))


def test_preset_is_airbenchs_recipe_and_changes_win():
    config = config_for("airbench94", epochs=2)
    assert (config.batch_size, config.epochs, config.learning_rate, config.momentum, config.tta) == (1024, 2, 11.5,
                                                                                                    0.85, 2)
    assert config_for("cnn") == Config()


def test_total_steps_of_a_fractional_schedule():
    """airbench's 9.9 epochs of 48 steps are 476 steps; 2 epochs are 96."""
    assert total_steps(config_for("airbench94").optimisation, 48) == 476
    assert total_steps(config_for("airbench94", epochs=2).optimisation, 48) == 96
    assert total_steps(Config(epochs=3).optimisation, 10) == 30


def test_decoupled_hyperparameters():
    """lr / (1024 (1 + 1/(1 - m))) and the coupled decay weight_decay x batch / lr: PyTorch SGD's values."""
    lr, decay = step_hyperparameters(config_for("airbench94").optimisation)
    kilostep = 1024 * (1 + 1 / 0.15)
    assert lr == pytest.approx(11.5 / kilostep)
    assert lr * decay == pytest.approx(0.0153 * 1024 / kilostep)  # the decay per step
    assert step_hyperparameters(Config(learning_rate=0.1, weight_decay=5e-4).optimisation) == (0.1, 5e-4)


def test_linear_schedule_warms_up_then_down():
    config = config_for("airbench94")
    schedule, peak = learning_rate_schedule(config.optimisation, 48), step_hyperparameters(config.optimisation)[0]
    warm = int(476 * 0.23)
    for step, factor in [(0, 0.2), (warm // 2, 0.2 + 0.8 * (warm // 2) / warm), (warm, 1.0),
                         (475, 1 - 0.93 * (475 - warm) / (476 - warm))]:
        assert float(schedule(step)) == pytest.approx(peak * factor, rel=1e-6)


@pytest.mark.slow
def test_parameter_groups():
    config = airbench()
    model = create_model(config, 10)
    state = create_train_state(config.optimisation, model, (32, 32, 3), jax.random.key(0), 10)
    labels = param_labels(state.params, config.optimisation, model.partly_trained())
    assert labels["whiten"] == {"kernel": "frozen", "bias": "whiten_bias"}
    assert labels["group1"]["norm1"]["bias"] == "norm_bias"
    assert labels["group1"]["conv1"]["kernel"] == labels["head"]["kernel"] == "plain"
    plain = Config(weight_decay=1e-4)
    assert set(jax.tree_util.tree_leaves(param_labels({"BatchNorm_0": {"bias": 0}}, plain.optimisation))) == {"plain"}


def sgd_updates(config, params, grads, steps):
    tx = create_optimizer(config.optimisation, 2, create_model(config, 10).partly_trained())
    opt_state, out = tx.init(params), []
    for _ in range(steps):
        updates, opt_state = tx.update(grads, opt_state, params)
        out.append(updates)
    return out


def test_groups_move_as_the_recipe_says():
    """Frozen filters never move; the whitening bias stops after whiten_bias_epochs (here 1 epoch = 2
    steps); BatchNorm biases move 64x as far for the same gradient, with the same decay product. The
    network names its partly trained parameters; without whitening there are none."""
    config = check(config_for("airbench94", whiten_bias_epochs=1, weight_decay=0.0))
    params = {"whiten": {"kernel": jnp.ones(3), "bias": jnp.ones(2)}, "norm1": {"bias": jnp.ones(2)},
              "conv": {"kernel": jnp.ones(2)}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates = sgd_updates(config, params, grads, 3)
    assert all(float(jnp.abs(u["whiten"]["kernel"]).max()) == 0 for u in updates)
    assert [bool(jnp.any(u["whiten"]["bias"] != 0)) for u in updates] == [True, True, False]
    np.testing.assert_allclose(updates[0]["norm1"]["bias"], 64 * updates[0]["conv"]["kernel"], rtol=1e-6)
    decayed = check(config_for("airbench94"))
    zero = jax.tree_util.tree_map(jnp.zeros_like, grads)  # decay alone: the same per-step shrink for both groups
    first = sgd_updates(decayed, params, zero, 1)[0]
    np.testing.assert_allclose(first["norm1"]["bias"], first["conv"]["kernel"], rtol=1e-6)
    learnt = sgd_updates(check(config_for("airbench94", whiten=False, weight_decay=0.0)), params, grads, 3)
    assert all(bool(jnp.all(u["whiten"]["kernel"] != 0)) for u in learnt)


def test_plain_configs_keep_the_plain_optimizer():
    """No groups: the optimizer state is what it was before parameter groups (old checkpoints load)."""
    params = {"Conv_0": {"kernel": jnp.ones(2)}}
    state = create_optimizer(Config(momentum=0.9).optimisation, 10).init(params)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(
        optax.sgd(optax.constant_schedule(0.01), momentum=0.9).init(params))


def toy_state(config, every=5, total=12):
    model = create_model(config, 10)
    state = create_train_state(config.optimisation, model, (32, 32, 3), jax.random.key(0), 4)
    return state, Lookahead(every, 0.95, total)


@pytest.mark.slow
def test_lookahead_syncs_every_few_steps_and_ends_on_the_average():
    config = airbench()
    state, lookahead = toy_state(config)
    moved = jax.tree_util.tree_map(lambda x: x + 1.0, state.variables)  # as if training moved every variable
    for step, synced in [(4, False), (5, True), (10, True)]:
        before = state.replace(step=step, params=moved["params"], model_state={"batch_stats": moved["batch_stats"]})
        after = lookahead(before)
        keep = 0.95 ** 5 * (step / 12) ** 3
        if not synced:
            assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, after.variables, moved))
            continue
        expected = optax.incremental_update(moved, state.averaged, 1 - keep)
        for got in (after.averaged, after.variables):
            for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
                np.testing.assert_allclose(a, b, rtol=1e-6)
    final = lookahead(state.replace(step=12, params=moved["params"]))  # the last step: the network is the average
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, final.variables, state.averaged))


@pytest.mark.slow
def test_lookahead_runs_are_evaluated_on_the_network():
    config = airbench()
    state, _ = toy_state(config)
    moved = state.replace(params=jax.tree_util.tree_map(lambda x: x + 1.0, state.params))
    assert moved.eval_variables["params"] is moved.params


def train_steps(config, devices, steps=2, seed=0):
    """`steps` steps of config's model on random bytes through the loop's own pmapped train function."""
    model = create_model(config, 10)
    state = create_train_state(config.optimisation, model, (32, 32, 3), jax.random.key(seed), 4)
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 10, 64).astype(np.int32)
    indices = split_over_devices(np.arange(steps * config.batch_size).reshape(steps, -1) % 64, len(devices))
    fn = make_program(Preprocess.of(config.optimisation, PRE.mean, PRE.std, 4), devices,
                      objective=Objective.of(config.optimisation, total_steps(config.optimisation, 4))).fn
    state, metrics = fn(replicate(state, devices), replicate(images, devices), replicate(labels, devices), indices,
                        jax.random.key(3))
    return unreplicate(state), np.asarray(unreplicate(metrics)["loss"])


@pytest.mark.slow
def test_summed_loss_is_the_global_batchs_whatever_the_devices():
    """loss_reduction sum: the gradient of the sum over the whole batch, on 1 device or 4 alike."""
    config = airbench(batch_size=16, lookahead=False)
    one, loss_one = train_steps(config, select_devices(1), steps=1)  # one step: its gradient is the point
    four, loss_four = train_steps(config, select_devices(4), steps=1)
    np.testing.assert_allclose(loss_four, loss_one, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(four.params), jax.tree_util.tree_leaves(one.params)):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)
    mean = airbench(batch_size=16, lookahead=False, loss_reduction="mean")
    meaned, _ = train_steps(mean, select_devices(1), steps=1)
    start = create_train_state(config.optimisation, create_model(config, 10), (32, 32, 3), jax.random.key(0), 4).params

    def moved(state):
        return float(jnp.abs(state.params["head"]["kernel"] - start["head"]["kernel"]).max())

    assert moved(one) > 4 * moved(meaned)  # a sum over 16 moves much further than the mean


def test_airbench_views():
    """flip(crop(pad(maybe_flip(x)))): the example's own flip, a reflect-padded crop at its offset,
    and the whole batch flipped again on odd epochs."""
    pre = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, translate=2, flip="alternating", steps_per_epoch=3)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8))
    draws = {"shift": jnp.array([[0, 0], [2, 2], [4, 1], [1, 3]]), "flip": jnp.array([True, False, False, True]),
             "odd_epoch": jnp.asarray(False)}
    views = np.asarray(pre.airbench_views(images, draws))
    for i, (dy, dx) in enumerate(np.asarray(draws["shift"])):
        image = np.asarray(images[i])[:, ::-1] if draws["flip"][i] else np.asarray(images[i])
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        np.testing.assert_array_equal(views[i], padded[dy:dy + 6, dx:dx + 6])
    odd = pre.airbench_views(images, {**draws, "odd_epoch": jnp.asarray(True)})
    np.testing.assert_array_equal(odd, views[:, :, ::-1])


def test_alternating_flip_draws():
    """Each example's flip is drawn once; its crop offset anew each epoch; odd epochs are flagged;
    the draws depend on the example's id, not on its place in the batch."""
    pre = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, translate=2, flip="alternating", steps_per_epoch=5)
    ids, key = jnp.arange(64), jax.random.key(0)
    first, same_epoch, next_epoch = (pre.draws(ids, key, jnp.asarray(s)) for s in (0, 4, 5))
    np.testing.assert_array_equal(first["flip"], next_epoch["flip"])
    np.testing.assert_array_equal(first["shift"], same_epoch["shift"])
    assert not np.array_equal(first["shift"], next_epoch["shift"])
    assert (bool(first["odd_epoch"]), bool(next_epoch["odd_epoch"])) == (False, True)
    assert 16 < int(first["flip"].sum()) < 48 and set(np.unique(first["shift"])) == set(range(5))
    reordered = pre.draws(ids[::-1], key, jnp.asarray(0))
    np.testing.assert_array_equal(reordered["shift"], first["shift"][::-1])
    random = Preprocess(mean=(0.0,) * 3, std=(1.0,) * 3, flip="random", steps_per_epoch=5)
    assert not np.array_equal(random.draws(ids, key, jnp.asarray(0))["flip"], random.draws(ids, key, jnp.asarray(5))["flip"])


def test_tta_levels():
    """Level 1: the mean over the image and its mirror; level 2: half that plus a quarter of it on each
    one-pixel shift (reflect-pad 1, crops at (0, 0) and (2, 2))."""
    f = lambda variables, x, train=False: jnp.sum(x * variables, axis=(1, 2))  # noqa: E731 - position-sensitive
    weights = jax.random.normal(jax.random.key(0), (5, 5, 2))
    x = jax.random.normal(jax.random.key(1), (3, 5, 5, 2))
    mirrored = lambda x: 0.5 * f(weights, x) + 0.5 * f(weights, mirror(x))  # noqa: E731
    np.testing.assert_allclose(with_tta(f, 1)(weights, x), mirrored(x), rtol=1e-6)
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    first, second = shifted_views(x)
    np.testing.assert_array_equal(first, padded[:, :5, :5])
    np.testing.assert_array_equal(second, padded[:, 2:, 2:])
    expected = 0.5 * mirrored(x) + 0.25 * (mirrored(first) + mirrored(second))
    np.testing.assert_allclose(with_tta(f, 2)(weights, x), expected, rtol=1e-6)
    assert with_tta(f, 0) is f
