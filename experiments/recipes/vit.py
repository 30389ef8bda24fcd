"""A tiny Vision Transformer for CIFAR-10: 4x4 patches (64 tokens on 32x32 images), a learned position
embedding, 4 pre-LayerNorm blocks of width 96 with 3 heads of 32 and a 2x GELU MLP, then the mean token through
LayerNorm to the classes: 311k parameters. Its size is set by the budget of about 40 minutes on a 2-core CPU
(~660 images/s, so 30 epochs): width 128 halves the epochs that fit, width 64 learned less per epoch in pilots.
With no convolutional prior it leans on crop and flip augmentation, label smoothing and a warm-up."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.config import at_least, knob
from jaxrec.models import recipe_knobs

DEFAULTS = {
    "epochs": 30,
    "batch_size": 128,
    "learning_rate": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "lr_schedule": "cosine",
    "warmup_epochs": 3,  # attention on untrained embeddings is unstable at SGD's full step size
    "weight_decay": 1e-4,
    "label_smoothing": 0.1,
    "augment": True,  # random crop + flip: a ViT has no translation prior of its own
    "tta": 1,
}


@dataclasses.dataclass(frozen=True)
class Knobs:
    """The network's size, as flags of `--model vit.py` (e.g. --width 32 --depth 1 for a smoke test)."""

    patch: int = knob(4, "Side of the square patches that become tokens.", at_least(1))
    width: int = knob(96, "Token width: a multiple of --heads.", at_least(1))
    depth: int = knob(4, "Transformer blocks.", at_least(1))
    # Heads of 32: no less accurate than more, narrower heads in pilots, and faster.
    heads: int = knob(3, "Attention heads per block.", at_least(1))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: self-attention, then an MLP, each added to its input."""

    heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        width = x.shape[-1]
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(x))
        y = nn.gelu(nn.Dense(width * self.mlp_ratio)(nn.LayerNorm()(x)))
        return x + nn.Dense(width)(y)


class ViT(nn.Module):
    """Patch embedding, position embedding, `depth` blocks, mean pooling and a linear classifier."""

    num_classes: int
    patch: int
    width: int
    depth: int
    heads: int
    mlp_ratio: int = 2

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        batch, height, width, _ = x.shape
        if height % self.patch or width % self.patch:
            raise ValueError(f"{height}x{width} images: both sides must be multiples of the patch, {self.patch}")
        # A strided convolution is a linear map of each non-overlapping patch.
        x = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding="VALID", name="embed")(x)
        x = x.reshape((batch, -1, self.width))
        # One position vector per token, sized by the images it is first built for.
        x = x + self.param("position", nn.initializers.normal(0.02), (1, x.shape[1], self.width))
        for _ in range(self.depth):
            x = Block(self.heads, self.mlp_ratio)(x)
        x = nn.LayerNorm()(x.mean(axis=1))
        # A zero head starts every class at the same logit, so the first steps do not chase a random one.
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros)(x)


def build(config: object, num_classes: int, kernels: object) -> nn.Module:
    """The ViT above, of the size its knobs give; kernels are not read (the CPU kernel choices are for convolutions
    of many layers)."""
    size = recipe_knobs(config)
    if size.width % size.heads:
        raise ValueError(f"--width {size.width} is not a multiple of --heads {size.heads}")
    return ViT(num_classes, size.patch, size.width, size.depth, size.heads)
