"""Pure step functions, (state, batch, rng) -> (state, metrics), and the evaluation step: averaged over a named axis,
so they run under `jax.pmap`, `jax.shard_map` or, with axis_name=None, `jax.jit` (docs/design.md, "Pure steps")."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxrec.config import Optimisation
from jaxrec.core.pipeline import Preprocess
from jaxrec.core.state import TrainState, Variables
from jaxrec.models import AXIS

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy on integer labels, with optional label smoothing."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def _psum(tree: Any, axis_name: str | None) -> Any:
    return jax.lax.psum(tree, axis_name) if axis_name else tree


@dataclasses.dataclass(frozen=True)
class Lookahead:
    """airbench94's lookahead (Config.lookahead), as docs/models.md's airbench94 table gives it."""

    every: int
    decay: float
    total_steps: int

    def __call__(self, state: TrainState) -> TrainState:
        """The state after step `state.step` (counted from 1, as the update follows the step)."""
        step = state.step
        keep = self.decay ** self.every * (step / self.total_steps) ** 3
        average = optax.incremental_update(state.variables, state.averaged, 1.0 - keep)
        synced = _with_variables(state, average).replace(averaged=average)
        state = _select(step % self.every == 0, synced, state)
        return _select(step >= self.total_steps, _with_variables(state, state.averaged), state)


def _with_variables(state: TrainState, variables: Variables) -> TrainState:
    return state.replace(params=variables["params"], model_state={k: variables[k] for k in state.model_state})


def _select(condition: jax.Array, yes: Any, no: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), yes, no)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a train step minimises and what follows the update: label smoothing, the batch loss as a mean or a sum
    (Config.loss_reduction), and lookahead (None: none). Hashable, so the compiled step is cached by it."""

    label_smoothing: float = 0.0
    loss_reduction: str = "mean"
    lookahead: Lookahead | None = None

    @classmethod
    def of(cls, settings: Optimisation, total_steps: int) -> "Objective":
        """The objective of a run with these (checked) settings that trains `total_steps` steps."""
        lookahead = (Lookahead(settings.lookahead_every, settings.lookahead_decay, total_steps)
                     if settings.lookahead else None)
        return cls(settings.label_smoothing, settings.loss_reduction, lookahead)


def train_step(state: TrainState, batch: Batch, rng: jax.Array, *, preprocess: Preprocess,
               objective: Objective = Objective(), axis_name: str | None = AXIS) -> tuple[TrainState, Metrics]:
    """One SGD step on this device's share of the batch: 'image' uint8 [b, H, W, C], 'label' int32 [b], 'index' int32
    [b] (example ids); rng: the run's training key (augmentation: docs/design.md, Data on the device)."""
    images = preprocess.train(batch["image"], batch["index"], rng, state.step)
    # A summed loss is the global batch's: each device's sum, times the device count, averages to it below.
    scale = 1.0 if objective.loss_reduction == "mean" else _psum(1.0, axis_name)

    def loss_fn(params):
        variables = {"params": params, **state.model_state}
        if state.model_state:  # the other collections, as this batch updates them (BatchNorm's running statistics)
            logits, model_state = state.apply_fn(variables, images, train=True, mutable=list(state.model_state))
        else:
            logits, model_state = state.apply_fn(variables, images, train=True), state.model_state
        losses = cross_entropy(logits, batch["label"], objective.label_smoothing)
        loss = losses.mean() if objective.loss_reduction == "mean" else losses.sum() * scale
        return loss, (logits, model_state, losses.mean())

    (_, (logits, model_state, loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    # One all-reduce for gradients and metrics together: on XLA:CPU a collective waiting for the other devices holds
    # a worker of the thread pool they all compute on, and two could hold every worker of a 2-core machine, leaving
    # the other device none for its convolution: a hang. BatchNorm's statistics are already global (forward pmeans).
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name) if axis_name else (grads, metrics)
    state = state.apply_gradients(grads=grads, model_state=model_state)
    return (state if objective.lookahead is None else objective.lookahead(state)), metrics


def label_rank(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Rank of each true label among its logits, 0 for the top one. Ties break as argmax and lax.top_k do (lower
    class index first), so rank 0 means exactly "argmax is right" and rank < k "label in lax.top_k(logits, k)"."""
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    classes = jnp.arange(logits.shape[-1])
    ahead = (logits > true_logit) | ((logits == true_logit) & (classes < labels[:, None]))
    return jnp.sum(ahead, axis=-1)


def eval_step(variables: Variables, batch: Batch, *, apply_fn: Callable, preprocess: Preprocess,
              axis_name: str | None = AXIS) -> Metrics:
    """Sums over this batch and the devices, ignoring padding (batch['mask'] == 0): loss_sum, count, the confusion
    matrix [true, predicted] and label_rank, a histogram of the true label's rank (cumsum: top-k hits for every k)."""
    logits = apply_fn(variables, preprocess.eval(batch["image"]), train=False)
    mask = batch["mask"]
    num_classes = logits.shape[-1]
    predicted = jnp.argmax(logits, -1)
    confusion = jnp.zeros((num_classes, num_classes), jnp.float32).at[batch["label"], predicted].add(mask)
    sums = {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
            "count": jnp.sum(mask), "confusion": confusion,
            "label_rank": jnp.zeros(num_classes, jnp.float32).at[label_rank(logits, batch["label"])].add(mask)}
    return _psum(sums, axis_name)
