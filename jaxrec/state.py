"""Creating the train state: model parameters plus optimizer state, step counter and apply_fn."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from jaxrec.config import Config
from jaxrec.optim import create_optimizer


def create_train_state(config: Config, model: nn.Module, image_shape: tuple[int, int, int],
                       rng: jax.Array, steps_per_epoch: int) -> TrainState:
    """Initialises `model` for images of `image_shape` (H, W, C) and wraps it with the optimizer."""
    variables = jax.jit(model.init)(rng, jnp.zeros((1, *image_shape), jnp.float32))
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             tx=create_optimizer(config, steps_per_epoch))

