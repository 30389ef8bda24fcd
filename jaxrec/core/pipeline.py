"""Device-side input pipeline: the host decides only which examples each step sees (`epoch_indices`,
`eval_indices`); gathering, augmentation and normalisation (`Preprocess`) run inside the compiled step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import Optimisation

CROP_PADDING = 4


def epoch_indices(key: jax.Array, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
    """Example indices of every step of an epoch, int32 [steps, batch_size]: a permutation from `key` and the epoch
    only, so a resumed run draws the same order; the last incomplete batch is dropped, so every step has one shape."""
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
    crop_key, flip_key = jax.random.split(key)
    cropped = translate(image, jax.random.randint(crop_key, (2,), 0, 2 * CROP_PADDING + 1), CROP_PADDING, "constant")
    return jnp.where(jax.random.bernoulli(flip_key), cropped[:, ::-1], cropped)


def translate(image: jax.Array, shift: jax.Array, pad: int, mode: str = "reflect") -> jax.Array:
    """`image` padded by `pad` (`mode`) and cropped back to its size at offset `shift` (dy, dx) in [0, 2 pad]."""
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=mode)
    return jax.lax.dynamic_slice(padded, (shift[0], shift[1], 0), image.shape)


def mirror(images: jax.Array) -> jax.Array:
    """Horizontal flip of images [..., H, W, C]."""
    return images[..., ::-1, :]


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Turns uint8 images into the model's float input; hashable, so it can close over a jitted step. Augmentation:
    `augment` (crop of the zero-padded image, flip), or airbench's `translate` and `flip` (docs/models.md;
    'alternating' needs `steps_per_epoch`), whose flip is drawn before the crop, as its reference does."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    translate: int = 0
    flip: str = "none"
    steps_per_epoch: int = 0

    @classmethod
    def of(cls, settings: Optimisation, mean: tuple[float, ...], std: tuple[float, ...],
           steps_per_epoch: int) -> "Preprocess":
        """The training preprocessing a run with these (checked) settings uses, with the data's mean/std."""
        return cls(mean=tuple(mean), std=tuple(std), augment=settings.augment, translate=settings.translate,
                   flip=settings.flip, steps_per_epoch=steps_per_epoch)

    def normalize(self, images: jax.Array) -> jax.Array:
        mean = jnp.asarray(self.mean, jnp.float32)
        scale = 1.0 / jnp.asarray(self.std, jnp.float32)
        return (images.astype(jnp.float32) - mean) * scale

    def train(self, images: jax.Array, example_ids: jax.Array, key: jax.Array, step: jax.Array) -> jax.Array:
        """Training input of the examples `example_ids` at step `step` (from 0), with the run's augmentation `key`;
        each example's draw folds in its id, so it does not depend on how a batch is split across devices."""
        if self.augment:
            step_key = jax.random.fold_in(key, step)
            keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(example_ids)
            images = jax.vmap(random_crop_flip)(images, keys)
        if self.translate or self.flip != "none":
            images = self.airbench_views(images, self.draws(example_ids, key, step))
        return self.normalize(images)

    def draws(self, example_ids: jax.Array, key: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
        """The random draws of airbench's augmentation for these examples at `step`: 'shift' [b, 2]
        in [0, 2 translate], 'flip' [b] bool (the example's own) and 'odd_epoch' (a scalar)."""
        epoch = step // max(self.steps_per_epoch, 1)
        epoch_key = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)
        once_key = jax.random.fold_in(key, 0)
        per_epoch = self.flip == "random"
        flip_keys = jax.vmap(lambda i: jax.random.fold_in(epoch_key if per_epoch else once_key, i))(example_ids)
        shift_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(epoch_key, 2), i))(example_ids)
        return {"shift": jax.vmap(lambda k: jax.random.randint(k, (2,), 0, 2 * self.translate + 1))(shift_keys),
                "flip": jax.vmap(jax.random.bernoulli)(flip_keys) if self.flip != "none"
                else jnp.zeros(example_ids.shape, bool),
                "odd_epoch": (epoch % 2 == 1) & (self.flip == "alternating")}

    def airbench_views(self, images: jax.Array, draws: dict[str, jax.Array]) -> jax.Array:
        """flip(crop(pad(maybe_flip(x)))) for each image, given its draws (see `draws`)."""
        images = jnp.where(draws["flip"][:, None, None, None], mirror(images), images)
        if self.translate:
            images = jax.vmap(lambda x, s: translate(x, s, self.translate))(images, draws["shift"])
        return jnp.where(draws["odd_epoch"], mirror(images), images)

    eval = normalize
