"""Test-time augmentation (airbench's, --tta): the model's logits averaged over flipped and one-pixel-shifted views
(docs/models.md, "airbench94"). Each level wraps the apply function, so every caller runs it unchanged."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrec.core.pipeline import mirror

# Each level, and the views of an image it runs the network on: the image; and its mirror; and two shifted copies.
VIEWS = {0: 1, 1: 2, 2: 6}


def shifted_views(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two one-pixel translations of images [b, H, W, C]: reflect-pad 1, crop at (0, 0) and (2, 2)."""
    height, width = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return padded[:, :height, :width], padded[:, 2:height + 2, 2:width + 2]


@functools.lru_cache(maxsize=16)
def with_tta(apply_fn: Callable, level: int) -> Callable:
    """`apply_fn(variables, images, train=False)` with test-time augmentation `level`; cached, so the programs that
    apply it compile once in a process."""
    if level not in VIEWS:
        raise ValueError(f"test-time augmentation level {level}: choose one of {tuple(VIEWS)}")
    if level == 0:
        return apply_fn

    def mirrored(variables: Any, images: jax.Array, **kwargs: Any) -> jax.Array:
        return 0.5 * apply_fn(variables, images, **kwargs) + 0.5 * apply_fn(variables, mirror(images), **kwargs)

    if level == 1:
        return mirrored

    def level2(variables: Any, images: jax.Array, **kwargs: Any) -> jax.Array:
        first, second = shifted_views(images)
        return (0.5 * mirrored(variables, images, **kwargs)
                + 0.25 * (mirrored(variables, first, **kwargs) + mirrored(variables, second, **kwargs)))

    return level2
