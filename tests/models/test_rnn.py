"""The lax.scan RNN (tanh, LSTM, GRU): numerics against a step-by-step loop, gradients, lengths,
shapes, tracing, and the row-reading classifier end to end (its 1-vs-8-device pmap check is in test_steps)."""

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from helpers import ROOT, run_script
from jaxrec.config import Config
from jaxrec.cli import commands as cli
from jaxrec.models import config_for, count_params, create_model
from jaxrec.models.recipes import recipe_problems
from jaxrec.run.checkpoints import field_differences
from jaxrec.models.rnn import CELLS, RNN, RowRNNClassifier, hidden_state, input_projection, zero_carry

ALL_CELLS = sorted(CELLS)


def cell_step(cell, params, carry, x):
    """One step of `cell` on input x [batch, features], the input product inside: (new carry, output h)."""
    return CELLS[cell].step(params, carry, input_projection(params, x))


_cell_step = jax.jit(cell_step, static_argnums=0)  # the reference loops: one dispatch per step


def _inputs(shape, seed=0, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale)


def _random_carry(cell, batch, hidden, seed):
    """A non-zero carry, so that tests also check how the initial carry is used."""
    return jax.tree_util.tree_map(lambda z: _inputs(z.shape, seed, 0.5), zero_carry(cell, batch, hidden))


def _init(model, *args, **kwargs):
    return model.init(jax.random.key(0), *args, **kwargs)["params"]


def _loop_one_example(cell, params, xs, length, num_layers, directions):
    """Reference: a plain Python loop over one example's first `length` steps, layer by layer.

    Returns outputs [time, hidden * directions] (zero past the length) and the carries per layer and
    direction; the backward direction reads steps length-1 .. 0. Slicing is done in NumPy, so
    each example's length does not compile new ops.
    """
    hidden = params["layer0_forward"]["recurrent_kernel"].shape[0]
    seq = np.asarray(xs)[None, :length]  # [1, length, features]
    carries = []
    for layer in range(num_layers):
        outs, layer_carries = [], []
        for name in directions:
            p = params[f"layer{layer}_{name}"]
            carry = zero_carry(cell, 1, hidden)
            hs = np.zeros((1, length, hidden), np.float32)
            for t in (range(length) if name == "forward" else range(length - 1, -1, -1)):
                carry, h = _cell_step(cell, p, carry, seq[:, t])
                hs[:, t] = h
            outs.append(hs)
            layer_carries.append(carry)
        seq = np.concatenate(outs, axis=-1)
        carries.append(tuple(layer_carries))
    padded = np.zeros((xs.shape[0], seq.shape[-1]), np.float32)
    padded[:length] = seq[0]
    return padded, tuple(carries)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_scan_equals_an_explicit_python_step_loop(cell):
    xs, carry0 = _inputs((3, 7, 5), seed=1), _random_carry(cell, 3, 4, seed=2)
    model = RNN(cell, hidden=4)
    params = _init(model, xs)
    outputs, ((carry,),) = model.apply({"params": params}, xs, initial_carry=((carry0,),))

    expected_carry, expected_outputs = carry0, []
    for t in range(xs.shape[1]):
        expected_carry, h = _cell_step(cell, params["layer0_forward"], expected_carry, xs[:, t])
        expected_outputs.append(h)
    chex.assert_trees_all_close(outputs, jnp.stack(expected_outputs, axis=1), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(carry, expected_carry, rtol=1e-5, atol=1e-6)


def _as_flax_cell_params(cell, params):
    """Our fused parameters, split per gate into flax.linen's cell layout (same gate equations)."""
    gates = CELLS[cell].gates
    w_in = jnp.split(params["input_kernel"], gates, axis=1)
    w_rec = jnp.split(params["recurrent_kernel"], gates, axis=1)
    bias = jnp.split(params["bias"], gates)
    if cell == "tanh":
        return {"i": {"kernel": w_in[0], "bias": bias[0]}, "h": {"kernel": w_rec[0]}}
    if cell == "lstm":  # flax puts the LSTM bias on the recurrent side
        return {**{f"i{g}": {"kernel": w} for g, w in zip("ifgo", w_in)},
                **{f"h{g}": {"kernel": w, "bias": b} for g, w, b in zip("ifgo", w_rec, bias)}}
    return {**{f"i{g}": {"kernel": w, "bias": b} for g, w, b in zip("rzn", w_in, bias)},
            "hr": {"kernel": w_rec[0]}, "hz": {"kernel": w_rec[1]},
            "hn": {"kernel": w_rec[2], "bias": params["recurrent_bias"]}}


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_cells_compute_what_flax_linen_cells_compute(cell):
    flax_cell = {"tanh": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell](features=4)
    x, carry = _inputs((3, 5), seed=10), _random_carry(cell, 3, 4, seed=11)
    params = _init(RNN(cell, hidden=4), x[:, None])["layer0_forward"]
    params = jax.tree_util.tree_map(lambda p: p + _inputs(p.shape, seed=12, scale=0.1), params)  # non-zero biases
    ours = cell_step(cell, params, carry, x)
    theirs = flax_cell.apply({"params": _as_flax_cell_params(cell, params)}, carry, x)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_stacked_bidirectional_with_lengths_equals_per_example_loops(cell):
    lengths = jnp.array([9, 5, 1, 0])
    xs = _inputs((4, 9, 3), seed=3)
    # Padding holds large garbage: any leak into outputs or carries shows up.
    xs = jnp.where(jnp.arange(9)[None, :, None] < lengths[:, None, None], xs, 1e3)
    model = RNN(cell, hidden=4, num_layers=2, bidirectional=True)
    params = _init(model, xs, lengths)
    outputs, carries = model.apply({"params": params}, xs, lengths)

    for b, length in enumerate(lengths.tolist()):
        expected_outputs, expected_carries = _loop_one_example(cell, params, xs[b], length, 2,
                                                               ("forward", "backward"))
        chex.assert_trees_all_close(outputs[b], expected_outputs, rtol=1e-5, atol=1e-6)
        mine = jax.tree_util.tree_map(lambda c: c[b:b + 1], carries)
        chex.assert_trees_all_close(mine, expected_carries, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_lengths_keep_the_carry_of_the_last_valid_step_and_zero_later_outputs(cell):
    lengths = [6, 2, 4]
    xs = _inputs((3, 6, 3), seed=4)
    model = RNN(cell, hidden=5)
    params = _init(model, xs)
    outputs, ((carry,),) = model.apply({"params": params}, xs, jnp.array(lengths))
    for b, length in enumerate(lengths):
        # The same example cut to its length, without masking: its carry after the last valid step.
        cut_outputs, ((cut_carry,),) = model.apply({"params": params}, xs[b:b + 1, :length])
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda c: c[b:b + 1], carry), cut_carry,
                                    rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(outputs[b:b + 1, :length], cut_outputs, rtol=1e-6, atol=1e-6)
        assert np.all(np.asarray(outputs[b, length:]) == 0)
    assert not np.allclose(np.asarray(hidden_state(cell, carry))[1], 0)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_initial_carry_continues_a_sequence(cell):
    xs = _inputs((2, 10, 3), seed=5)
    model = RNN(cell, hidden=4, num_layers=2)
    params = {"params": _init(model, xs)}
    full_outputs, full_carry = model.apply(params, xs)
    _, carry = model.apply(params, xs[:, :4])
    rest_outputs, rest_carry = model.apply(params, xs[:, 4:], initial_carry=carry)
    chex.assert_trees_all_close(rest_outputs, full_outputs[:, 4:], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(rest_carry, full_carry, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gradients_match_finite_differences(cell):
    with jax.enable_x64(True):  # float64 so that finite differences are accurate enough to compare
        xs = _inputs((2, 5, 2), seed=6).astype(jnp.float64)
        lengths = jnp.array([5, 3])
        model = RNN(cell, hidden=3, bidirectional=True)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), _init(model, xs, lengths))
        weights = _inputs((2, 5, 6), seed=7).astype(jnp.float64)

        def loss(params, xs):
            total = 0.0
            for n in (lengths, None):  # the masked and the unmasked scan
                outputs, carries = model.apply({"params": params}, xs, n)
                total += jnp.sum(outputs * weights) + sum(jnp.sum(c ** 2) for c in jax.tree_util.tree_leaves(carries))
            return total

        check_grads(jax.jit(loss), (params, xs), order=1, modes=("rev",))


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_gradients_are_finite_and_reach_the_first_step_over_40_steps(cell):
    images = _inputs((4, 40, 6, 2), seed=8, scale=3.0)  # 40 rows = 40 time steps
    labels = jnp.array([0, 1, 2, 3])
    model = RowRNNClassifier(num_classes=4, cell=cell, hidden=16)
    params = _init(model, images)

    def loss(params, images):
        logits = model.apply({"params": params}, images)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    grads, image_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, images)
    chex.assert_tree_all_finite((grads, image_grads))
    assert np.any(np.asarray(image_grads[:, 0]) != 0), "no gradient reaches the first time step"


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (3, False), (2, True)])
def test_output_and_carry_shapes(cell, num_layers, bidirectional):
    batch, time, features, hidden = 3, 6, 5, 7
    xs = jax.ShapeDtypeStruct((batch, time, features), jnp.float32)  # shapes only: nothing is computed
    model = RNN(cell, hidden=hidden, num_layers=num_layers, bidirectional=bidirectional)
    params = jax.eval_shape(model.init, jax.random.key(0), xs)
    outputs, carries = jax.eval_shape(model.apply, params, xs, jnp.ones(batch, jnp.int32))
    directions = 2 if bidirectional else 1
    chex.assert_shape(outputs, (batch, time, hidden * directions))
    assert len(carries) == num_layers and all(len(layer) == directions for layer in carries)
    chex.assert_trees_all_equal_shapes_and_dtypes(carries, model.zero_carry(batch))
    for layer in carries:
        for carry in layer:
            chex.assert_shape(hidden_state(cell, carry), (batch, hidden))
            assert isinstance(carry, tuple) == (cell == "lstm")  # LSTM carries (c, h)
    # Layers above the first read the concatenated directions of the layer below.
    for layer in range(1, num_layers):
        assert params["params"][f"layer{layer}_forward"]["input_kernel"].shape[0] == hidden * directions


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_logits_shape_and_parameter_count(cell, bidirectional):
    height, width, channels, hidden, classes = 32, 32, 3, 8, 10
    model = create_model(config_for("rnn", rnn_cell=cell, rnn_hidden=hidden, rnn_bidirectional=bidirectional),
                         num_classes=classes)
    images = jax.ShapeDtypeStruct((2, height, width, channels), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), images)
    chex.assert_shape(jax.eval_shape(model.apply, params, images), (2, classes))
    gates = {"tanh": 1, "gru": 3, "lstm": 4}[cell]
    directions = 2 if bidirectional else 1
    per_direction = gates * hidden * (width * channels + hidden + 1) + (hidden if cell == "gru" else 0)
    params = jax.tree_util.tree_map(lambda p: np.zeros(p.shape, p.dtype), params)
    assert count_params(params) == directions * per_direction + hidden * directions * classes + classes


def test_classifier_reads_one_row_per_step():
    model = RowRNNClassifier(num_classes=3, cell="tanh", hidden=4)
    images = _inputs((2, 5, 4, 3))
    params = _init(model, images)
    carry = zero_carry("tanh", 2, 4)
    for row in range(5):  # the same cell over rows, pixels x channels as features
        carry, _ = cell_step("tanh", params["RNN_0"]["layer0_forward"], carry, images[:, row].reshape(2, 12))
    expected = carry @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
    chex.assert_trees_all_close(model.apply({"params": params}, images), expected, rtol=1e-5, atol=1e-6)


def test_no_retrace_for_a_new_batch_of_the_same_shape():
    model = RNN("tanh", hidden=4)
    xs = _inputs((3, 5, 2))
    params = {"params": _init(model, xs, jnp.array([5, 5, 5]))}
    chex.clear_trace_counter()
    apply = jax.jit(chex.assert_max_traces(lambda p, x, n: model.apply(p, x, n), n=1))
    for seed in range(3):
        apply(params, _inputs((3, 5, 2), seed=seed), jnp.array([5 - seed, 2, 1]))
    with pytest.raises(AssertionError):  # the counter works: a new shape traces again
        apply(params, _inputs((4, 5, 2)), jnp.array([5, 2, 1, 3]))


@pytest.mark.slow
def test_experiment_script_trains_the_rnn_on_8_devices(tmp_path):
    result = run_script("experiments/cifar_rnn.py", "--dataset", "cifar10_sample", "--epochs", "1", "--rnn_hidden", "8",
                        "--progress", "false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    workdir = tmp_path / "runs" / "rnn_cifar10_sample_seed0"  # the default workdir names the model
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["config"]["model"] == "rnn" and dict(summary["config"]["knobs"])["rnn_cell"] == "lstm"
    assert summary["num_devices"] == 8 and summary["steps"] == 400 // 128  # the 8 of the tests' XLA_FLAGS, kept
    assert summary["param_count"] == 4 * 8 * (32 * 3 + 8 + 1) + 8 * 10 + 10
    assert 0 <= summary["test_accuracy"] <= 1 and np.isfinite(summary["test_loss"])


def test_bad_rnn_settings_are_refused_with_the_fix(capsys):
    assert recipe_problems(config_for("rnn", rnn_cell="elman", rnn_hidden=0, rnn_layers=0)) == [
        "--rnn_cell elman: must be one of tanh, lstm, gru", "--rnn_hidden 0: must be >= 1",
        "--rnn_layers 0: must be >= 1"]
    # They are the rnn recipe's own knobs: flags of --model rnn only.
    argv = ["train", "--model", "cnn", "--rnn_hidden", "8"]
    with pytest.raises(SystemExit):
        cli.build_parser(cli.model_defaults(argv)).parse_args(argv)
    err = capsys.readouterr().err
    assert "unrecognized arguments: --rnn_hidden 8; --rnn_hidden is a setting of --model rnn" in err


def test_a_run_recorded_while_the_rnn_settings_were_config_fields_loads_and_resumes():
    saved = json.loads((ROOT / "results" / "cifar10_rnn_seed0" / "config.json").read_text())
    moved = {name: saved[name] for name in ("rnn_cell", "rnn_hidden", "rnn_layers", "rnn_bidirectional")}
    config = Config.from_dict(saved)
    assert dict(config.knobs) == moved and create_model(config, 10).hidden == moved["rnn_hidden"]
    assert field_differences(saved, config.to_dict(), ()) == []  # what a resume compares
    assert field_differences(saved, config.replace(knobs=(("rnn_hidden", 7),)).to_dict(), ()) != []
