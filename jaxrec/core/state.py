"""The train state: flax's, with the model's other collections (`model_state`) and a weight-averaging recipe's copy
(`averaged`), all checkpointed (docs/design.md, "Model state")."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training import train_state

from jaxrec.config import Optimisation
from jaxrec.core.optim import create_optimizer

Variables = dict[str, Any]


class TrainState(train_state.TrainState):
    """flax's TrainState (step, apply_fn, params, tx, opt_state) plus `model_state` and `averaged`."""

    model_state: Variables = struct.field(default_factory=dict)
    averaged: Variables | None = None
    # Whether evaluation applies `averaged` (an EMA of the weights) or the network itself (lookahead's
    # average is the network's slow copy: the network takes it every few steps and at the end).
    evaluate_average: bool = struct.field(pytree_node=False, default=True)

    @property
    def variables(self) -> Variables:
        """What the model applies: {'params': ..., **model_state}."""
        return {"params": self.params, **self.model_state}

    @property
    def eval_variables(self) -> Variables:
        """What evaluation and prediction apply: `averaged` when kept for evaluation, else `variables`."""
        return self.averaged if self.averaged is not None and self.evaluate_average else self.variables


@functools.partial(jax.jit, static_argnums=0)
def _init(model: nn.Module, rng: jax.Array, images: jax.Array) -> Variables:
    return model.init(rng, images)


def create_train_state(settings: Optimisation, model: nn.Module, image_shape: tuple[int, int, int],
                       rng: jax.Array, steps_per_epoch: int, init_images: np.ndarray | None = None) -> TrainState:
    """Initialises `model` for images of `image_shape` (H, W, C) and wraps it with the optimizer. init_images:
    normalised training images [n, H, W, C] for a model whose `init_from_data(variables, images)` reads
    `init_examples` of them (airbench94's whitening); a model's `partly_trained()` names its partly trained params."""
    # `model.init` on one zero image, compiled once per (model, shape) in a process so that runs, seeds and tests
    # with equal models reuse it; a model with an unhashable field is compiled each time.
    images = jnp.zeros((1, *image_shape), jnp.float32)
    try:
        hash(model)
    except TypeError:
        variables = jax.jit(model.init)(rng, images)
    else:
        variables = _init(model, rng, images)
    if init_images is not None and hasattr(model, "init_from_data"):
        variables = model.init_from_data(variables, init_images)
    params, model_state = variables["params"], {name: value for name, value in variables.items() if name != "params"}
    partly_trained = model.partly_trained() if hasattr(model, "partly_trained") else None
    return TrainState.create(apply_fn=model.apply, params=params, model_state=model_state,
                             tx=create_optimizer(settings, steps_per_epoch, partly_trained),
                             averaged=dict(variables) if settings.lookahead else None,
                             evaluate_average=not settings.lookahead)


def init_sample(examples: int, count: int, rng: jax.Array) -> np.ndarray:
    """The indices of `count` of the `examples` training images (all of them if fewer) drawn without
    replacement with the init key, sorted: the images a data-dependent initialisation reads."""
    if count >= examples:
        return np.arange(examples)
    chosen = jax.random.choice(jax.random.fold_in(rng, 1), examples, (count,), replace=False)
    return np.sort(np.asarray(chosen))
