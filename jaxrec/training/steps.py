"""Pure step functions: (state, batch, rng) -> (state, metrics), and the evaluation step.

They know nothing about devices. Cross-device averaging goes through `lax.pmean`/`lax.psum` over a
named axis, so the same function runs under `jax.pmap`, under `jax.shard_map(..., check_vma=False)`
(pmap's semantics: each device differentiates its own loss, the step averages the gradients), or
with axis_name=None under plain `jax.jit` on one device. Wrappers live in `jaxrec.training.parallel`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxrec.data.pipeline import Preprocess
from jaxrec.training.state import TrainState, Variables

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
# The named axis the steps average over (jaxrec.training.parallel maps them over it), and BatchNorm's global
# statistics with them (jaxrec.models).
AXIS = "batch"


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy on integer labels, with optional label smoothing."""
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def _pmean(tree: Any, axis_name: str | None) -> Any:
    return jax.lax.pmean(tree, axis_name) if axis_name else tree


def _psum(tree: Any, axis_name: str | None) -> Any:
    return jax.lax.psum(tree, axis_name) if axis_name else tree


def train_step(state: TrainState, batch: Batch, rng: jax.Array, *, preprocess: Preprocess,
               label_smoothing: float = 0.0, axis_name: str | None = AXIS) -> tuple[TrainState, Metrics]:
    """One SGD step on this device's share of the global batch.

    batch: 'image' uint8 [b, H, W, C], 'label' int32 [b], 'index' int32 [b] (the examples' ids in
    the data set, which seed their augmentation). rng: the run's training key; the step number is
    folded in here, so a resumed run draws the same augmentations.
    """
    step_key = jax.random.fold_in(rng, state.step)
    images = preprocess.train(batch["image"], batch["index"], step_key)

    def loss_fn(params):
        logits, model_state = apply_train(state, params, images)
        loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
        return loss, (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    # One all-reduce per step, for the gradients and the metrics together. On XLA:CPU a collective
    # waiting for the other devices holds a worker of the one thread pool they all compute on; two
    # independent ones (as separate pmeans were) could hold every worker on a 2-core machine, and the
    # other device, with no worker left for its convolution, never arrived: a hang, then an abort.
    # (BatchNorm's statistics are already global: its own pmeans run inside the forward pass.)
    grads, metrics = _pmean((grads, metrics), axis_name)
    return state.apply_gradients(grads=grads, model_state=model_state), metrics


def apply_train(state: TrainState, params: Any, images: jax.Array) -> tuple[jax.Array, Variables]:
    """The model in train mode: logits, and its other collections as updated by this batch
    (BatchNorm's running statistics); a model without any gives back the empty model_state."""
    variables = {"params": params, **state.model_state}
    if not state.model_state:
        return state.apply_fn(variables, images, train=True), state.model_state
    return state.apply_fn(variables, images, train=True, mutable=list(state.model_state))


def label_rank(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Rank of each true label among its logits, 0 for the top one.

    Ties break as argmax and lax.top_k do (the lower class index ranks first), so rank 0 means
    exactly "argmax is right" and rank < k means "the label is in lax.top_k(logits, k)".
    """
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    classes = jnp.arange(logits.shape[-1])
    ahead = (logits > true_logit) | ((logits == true_logit) & (classes < labels[:, None]))
    return jnp.sum(ahead, axis=-1)


def eval_step(variables: Variables, batch: Batch, *, apply_fn: Callable, preprocess: Preprocess,
              axis_name: str | None = AXIS) -> Metrics:
    """Sums over this batch, ignoring padded examples (batch['mask'] == 0).

    variables: the model's variables in eval mode (TrainState.eval_variables: the parameters and
    the running statistics); apply_fn: the model's apply (e.g. `model.apply`). Returns,
    summed across devices: loss_sum, count, the confusion matrix [true, predicted] (which gives
    accuracy, precision, recall and F1) and label_rank, a histogram of the true label's rank among
    the logits (its cumulative sum is the top-k hit count for every k).
    """
    logits = apply_fn(variables, preprocess.eval(batch["image"]), train=False)
    mask = batch["mask"]
    num_classes = logits.shape[-1]
    predicted = jnp.argmax(logits, -1)
    confusion = jnp.zeros((num_classes, num_classes), jnp.float32).at[batch["label"], predicted].add(mask)
    sums = {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
            "count": jnp.sum(mask), "confusion": confusion,
            "label_rank": jnp.zeros(num_classes, jnp.float32).at[label_rank(logits, batch["label"])].add(mask)}
    return _psum(sums, axis_name)
