"""Recurrent networks run over time with `jax.lax.scan` (pure tanh, LSTM and GRU cells), and an image classifier that
reads one row per step: docs/rnn.md."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.config import Config, at_least, knob
from jaxrec.models.recipes import recipe_knobs

FLOAT32 = True  # it takes no --dtype: its cells compute in float32
BATCH_NORM = False

Params = dict[str, jax.Array]
Carry = Any  # h [batch, hidden] for tanh and GRU; (c, h) for the LSTM


def _tanh_step(params: Params, h: jax.Array, x_proj: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = jnp.tanh(x_proj + h @ params["recurrent_kernel"])
    return h, h


def _lstm_step(params: Params, carry: tuple[jax.Array, jax.Array],
               x_proj: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    c, h = carry
    i, f, g, o = jnp.split(x_proj + h @ params["recurrent_kernel"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h


def _gru_step(params: Params, h: jax.Array, x_proj: jax.Array) -> tuple[jax.Array, jax.Array]:
    # The reset gate scales the candidate's recurrent term including its bias (as in flax.linen.GRUCell).
    xr, xz, xn = jnp.split(x_proj, 3, axis=-1)
    hr, hz, hn = jnp.split(h @ params["recurrent_kernel"], 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + params["recurrent_bias"]))
    h = (1.0 - z) * n + z * h
    return h, h


class Cell(NamedTuple):
    """A recurrent cell: how many gate blocks it has, its step, and whether its carry is (c, h)."""

    gates: int
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]  # (params, carry, x @ W + b)
    has_cell_state: bool = False


CELLS: dict[str, Cell] = {
    "tanh": Cell(gates=1, step=_tanh_step),
    "lstm": Cell(gates=4, step=_lstm_step, has_cell_state=True),
    "gru": Cell(gates=3, step=_gru_step),
}


def zero_carry(cell: str, batch_size: int, hidden: int, dtype=jnp.float32) -> Carry:
    """The all-zero carry of one layer and direction."""
    h = jnp.zeros((batch_size, hidden), dtype)
    return (h, h) if CELLS[cell].has_cell_state else h


def hidden_state(cell: str, carry: Carry) -> jax.Array:
    """The output part h of a carry ([batch, hidden])."""
    return carry[1] if CELLS[cell].has_cell_state else carry


def input_projection(params: Params, xs: jax.Array) -> jax.Array:
    """x_t @ W + b for every time step at once: [..., features] -> [..., gates * hidden]."""
    return xs @ params["input_kernel"] + params["bias"]


def reverse_sequences(xs: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Reverses time-major xs [time, batch, ...] within each example's length, padding in place; its own
    inverse, so it also puts a reversed run's outputs back in order."""
    if lengths is None:
        return xs[::-1]
    t = jnp.arange(xs.shape[0])[:, None]
    source = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [time, batch]
    source = source.reshape(source.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, source, axis=0)


def scan_cell(cell: str, params: Params, xs: jax.Array, carry: Carry, lengths: jax.Array | None = None,
              reverse: bool = False) -> tuple[jax.Array, Carry]:
    """Runs `cell` over xs [batch, time, features]: outputs [batch, time, hidden] and the final carry. Steps
    at t >= lengths[b] leave example b's carry unchanged and output zeros. `reverse` reads each sequence from
    its last valid step back to t=0 (outputs stay aligned with the input positions)."""
    step = CELLS[cell].step
    projected = jnp.swapaxes(input_projection(params, xs), 0, 1)  # time-major for scan
    if reverse:
        projected = reverse_sequences(projected, lengths)

    if lengths is None:
        def body(carry, x_proj):
            return step(params, carry, x_proj)
        scanned = projected
    else:
        valid = jnp.arange(xs.shape[1])[:, None] < lengths[None, :]  # [time, batch]

        def body(carry, inputs):
            x_proj, keep = inputs
            new_carry, h = step(params, carry, x_proj)
            keep = keep[:, None]
            carry = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
            return carry, jnp.where(keep, h, jnp.zeros_like(h))
        scanned = (projected, valid)

    # A rolled loop: unlike convolutions (jaxrec.core.parallel), these small matmuls are not slowed down by
    # XLA:CPU's while loop; unrolling trained no faster, and the rolled scan compiles in a fraction of the time.
    carry, outputs = jax.lax.scan(body, carry, scanned)
    if reverse:
        outputs = reverse_sequences(outputs, lengths)
    return jnp.swapaxes(outputs, 0, 1), carry


def _orthogonal_per_gate(key: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """[hidden, gates * hidden]: an orthogonal hidden x hidden block per gate."""
    hidden, width = shape
    orthogonal = nn.initializers.orthogonal()
    blocks = [orthogonal(k, (hidden, hidden), dtype) for k in jax.random.split(key, width // hidden)]
    return jnp.concatenate(blocks, axis=1)


def _forget_bias_one(key: jax.Array, shape: tuple[int], dtype=jnp.float32) -> jax.Array:
    """LSTM bias, gates i, f, g, o: a forget bias of 1 keeps the memory early in training."""
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


class RecurrentLayer(nn.Module):
    """One recurrent layer in one direction: declares the cell's parameters, scans it over time."""

    cell: str
    hidden: int
    reverse: bool = False

    @nn.compact
    def __call__(self, xs: jax.Array, lengths: jax.Array | None = None,
                 initial_carry: Carry | None = None) -> tuple[jax.Array, Carry]:
        width = CELLS[self.cell].gates * self.hidden
        params = {
            "input_kernel": self.param("input_kernel", nn.initializers.lecun_normal(), (xs.shape[-1], width)),
            "recurrent_kernel": self.param("recurrent_kernel", _orthogonal_per_gate, (self.hidden, width)),
            "bias": self.param("bias", _forget_bias_one if self.cell == "lstm" else nn.initializers.zeros,
                               (width,)),
        }
        if self.cell == "gru":
            params["recurrent_bias"] = self.param("recurrent_bias", nn.initializers.zeros, (self.hidden,))
        if initial_carry is None:
            initial_carry = zero_carry(self.cell, xs.shape[0], self.hidden, xs.dtype)
        return scan_cell(self.cell, params, xs, initial_carry, lengths, self.reverse)


class RNN(nn.Module):
    """Stacked, optionally bidirectional recurrent network over xs [batch, time, features]. Returns outputs
    [batch, time, hidden * directions] of the top layer (zero past each example's length) and the final carry:
    per layer, per direction (forward, then backward), a cell carry, the backward one after reading back to t=0.
    `initial_carry` has the same structure."""

    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1
    bidirectional: bool = False

    @property
    def directions(self) -> tuple[bool, ...]:
        """The `reverse` flag of each direction."""
        return (False, True) if self.bidirectional else (False,)

    def zero_carry(self, batch_size: int, dtype=jnp.float32) -> tuple[tuple[Carry, ...], ...]:
        return tuple(tuple(zero_carry(self.cell, batch_size, self.hidden, dtype) for _ in self.directions)
                     for _ in range(self.num_layers))

    @nn.compact
    def __call__(self, xs: jax.Array, lengths: jax.Array | None = None,
                 initial_carry: tuple[tuple[Carry, ...], ...] | None = None) -> tuple[jax.Array, tuple]:
        if initial_carry is None:
            initial_carry = self.zero_carry(xs.shape[0], xs.dtype)
        carries = []
        for layer in range(self.num_layers):
            outputs, layer_carry = [], []
            for reverse, carry in zip(self.directions, initial_carry[layer]):
                name = f"layer{layer}_{'backward' if reverse else 'forward'}"
                out, carry = RecurrentLayer(self.cell, self.hidden, reverse, name=name)(
                    xs, lengths, carry)
                outputs.append(out)
                layer_carry.append(carry)
            xs = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
            carries.append(tuple(layer_carry))
        return xs, tuple(carries)


class RowRNNClassifier(nn.Module):
    """Reads an image as a sequence, one row per time step (the row's pixels x channels as features), and
    classifies it with a dense head on the top layer's final hidden state(s); the defaults' size: docs/rnn.md."""

    num_classes: int
    cell: str = "lstm"
    hidden: int = 256
    num_layers: int = 1
    bidirectional: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Maps float images [batch, height, width, channels] to logits [batch, num_classes]; `train` is unused."""
        batch, height, width, channels = images.shape
        rows = images.reshape(batch, height, width * channels)
        _, carry = RNN(self.cell, self.hidden, self.num_layers, self.bidirectional)(rows)
        final = jnp.concatenate([hidden_state(self.cell, c) for c in carry[-1]], axis=-1)
        return nn.Dense(self.num_classes)(final)


@dataclasses.dataclass(frozen=True)
class Knobs:
    """The recipe's own settings (flags of `--model rnn`; jaxrec.models.recipes)."""

    rnn_cell: Literal["tanh", "lstm", "gru"] = knob(
        "lstm", "Recurrent cell of model=rnn: tanh (the article's simple RNN), lstm or gru.")
    rnn_hidden: int = knob(256, "Hidden units per direction of each recurrent layer (model=rnn).", at_least(1))
    rnn_layers: int = knob(1, "Stacked recurrent layers (model=rnn).", at_least(1))
    rnn_bidirectional: bool = knob(False, "Also read the rows bottom-up and classify from both final states "
                                          "(model=rnn).")


def build(config: Config, num_classes: int, kernels: Any = None) -> RowRNNClassifier:
    """The row-reading RNN as the recipe's knobs set it; it has no kernels to choose."""
    knobs = recipe_knobs(config)
    return RowRNNClassifier(num_classes=num_classes, cell=knobs.rnn_cell, hidden=knobs.rnn_hidden,
                            num_layers=knobs.rnn_layers, bidirectional=knobs.rnn_bidirectional)
