"""Device-side input pipeline: which examples each step sees, and how they are preprocessed.

The data set lives on the device(s) as uint8 arrays. The host only decides *indices*: a seeded
permutation per epoch (`epoch_indices`), or a padded, masked sweep for evaluation
(`eval_indices`). Gathering, augmentation and normalisation run inside the compiled step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

CROP_PADDING = 4


def epoch_indices(key: jax.Array, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
    """Example indices of every step of an epoch, int32 [steps, batch_size].

    A fresh permutation per epoch, derived from `key` and the epoch number only, so a resumed run
    draws the same order. The last incomplete batch is dropped, so every step has the same shape.
    """
    steps = num_examples // batch_size
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    return np.asarray(order[: steps * batch_size], np.int32).reshape(steps, batch_size)


def eval_indices(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [batches, batch_size] covering every example once, and a mask that is 0 on padding."""
    batches = -(-num_examples // batch_size)
    flat = np.arange(batches * batch_size)
    mask = (flat < num_examples).astype(np.float32)
    indices = np.where(flat < num_examples, flat, 0).astype(np.int32)
    return indices.reshape(batches, batch_size), mask.reshape(batches, batch_size)


def random_crop_flip(image: jax.Array, key: jax.Array) -> jax.Array:
    """Random crop with 4-pixel zero padding, and a horizontal flip with probability 1/2."""
    height, width, _ = image.shape
    crop_key, flip_key = jax.random.split(key)
    padded = jnp.pad(image, ((CROP_PADDING, CROP_PADDING), (CROP_PADDING, CROP_PADDING), (0, 0)))
    dy, dx = jax.random.randint(crop_key, (2,), 0, 2 * CROP_PADDING + 1)
    cropped = jax.lax.dynamic_slice(padded, (dy, dx, 0), image.shape)
    return jnp.where(jax.random.bernoulli(flip_key), cropped[:, ::-1], cropped)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Turns uint8 images into the model's float input; hashable, so it can close over a jitted step."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False

    def normalize(self, images: jax.Array) -> jax.Array:
        mean = jnp.asarray(self.mean, jnp.float32)
        scale = 1.0 / jnp.asarray(self.std, jnp.float32)
        return (images.astype(jnp.float32) - mean) * scale

    def train(self, images: jax.Array, example_ids: jax.Array, key: jax.Array) -> jax.Array:
        """Training input. Each example's augmentation key is folded from its id in the data set,
        so the result does not depend on how a batch is split across devices."""
        if self.augment:
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
            images = jax.vmap(random_crop_flip)(images, keys)
        return self.normalize(images)

    def eval(self, images: jax.Array) -> jax.Array:
        return self.normalize(images)
