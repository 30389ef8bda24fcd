"""The train state: parameters, the model's other collections, optimizer state, step, and room for
an averaged copy of the weights.

`params` are what the optimizer trains. `model_state` holds the model's other variable collections
(BatchNorm's `batch_stats`), which the train step updates in train mode and evaluation reads; it is
`{}` for a model without any. `averaged` is an averaged copy of the variables ({'params', and the
collections of model_state}) that a weight-averaging recipe (EMA, lookahead) keeps, None when none
is kept. All of it is checkpointed (jaxrec.run.checkpoints), so a resumed run continues from exactly
the state it stopped in.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from flax.training import train_state

from jaxrec.config import Config
from jaxrec.training.optim import create_optimizer

Variables = dict[str, Any]


class TrainState(train_state.TrainState):
    """flax's TrainState (step, apply_fn, params, tx, opt_state) plus the model's other collections
    and an optional averaged copy of the variables."""

    model_state: Variables = struct.field(default_factory=dict)
    averaged: Variables | None = None

    @property
    def variables(self) -> Variables:
        """What the model applies: {'params': ..., **model_state}."""
        return {"params": self.params, **self.model_state}

    @property
    def eval_variables(self) -> Variables:
        """What evaluation and prediction apply: the averaged copy when one is kept, else `variables`."""
        return self.variables if self.averaged is None else self.averaged


def split_variables(variables: Variables) -> tuple[Any, Variables]:
    """A model's variables (as `Module.init` returns them) -> (params, the other collections)."""
    return variables["params"], {name: value for name, value in variables.items() if name != "params"}


def create_train_state(config: Config, model: nn.Module, image_shape: tuple[int, int, int],
                       rng: jax.Array, steps_per_epoch: int) -> TrainState:
    """Initialises `model` for images of `image_shape` (H, W, C) and wraps it with the optimizer."""
    params, model_state = split_variables(jax.jit(model.init)(rng, jnp.zeros((1, *image_shape), jnp.float32)))
    return TrainState.create(apply_fn=model.apply, params=params, model_state=model_state,
                             tx=create_optimizer(config, steps_per_epoch))
