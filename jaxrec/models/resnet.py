"""Residual networks for CIFAR-sized images (docs/models.md): `resnet18` with the CIFAR stem, and `resnet20`, He et
al. 2016's, with zero-padded ("option A") shortcuts. Convolutions have no bias: BatchNorm's takes its place."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.config import Config
from jaxrec.models import AXIS
from jaxrec.models.kernels import compute_dtype

HE_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


@dataclasses.dataclass(frozen=True)
class Norm:
    """BatchNorm's settings; `axis`: the device axis its train-mode statistics are averaged over."""

    axis: str | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5

    def __call__(self, train: bool) -> nn.BatchNorm:
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                            axis_name=self.axis if train else None)


def conv(features: int, kernel: int, stride: int = 1, dtype: Any = jnp.float32) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=kernel // 2, use_bias=False,
                   kernel_init=HE_INIT, dtype=dtype)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, -> ReLU."""

    features: int
    stride: int
    shortcut: str  # "projection" (1x1 conv + BN) or "pad" (subsample, zero-pad the channels)
    norm: Norm
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(self.norm(train)(conv(self.features, 3, self.stride, self.dtype)(x)))
        y = self.norm(train)(conv(self.features, 3, dtype=self.dtype)(y))
        if x.shape[-1] != self.features or self.stride != 1:
            if self.shortcut == "projection":
                x = self.norm(train)(conv(self.features, 1, self.stride, self.dtype)(x))
            else:
                x = x[:, ::self.stride, ::self.stride, :]
                pad = self.features - x.shape[-1]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
        return nn.relu(x + y)


class CifarResNet(nn.Module):
    """A stem convolution, stages of basic blocks (the first of each stage but the first strides 2),
    global average pooling and a dense classifier."""

    num_classes: int
    widths: Sequence[int]
    blocks: Sequence[int]
    shortcut: str = "projection"
    norm: Norm = Norm()
    dtype: Any = jnp.float32  # of the convolutions and the dense layer; parameters and BN statistics stay float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Maps float images [batch, height, width, channels] to logits [batch, num_classes]."""
        x = nn.relu(self.norm(train)(conv(self.widths[0], 3, dtype=self.dtype)(x)))
        for stage, (features, count) in enumerate(zip(self.widths, self.blocks)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(features, stride, self.shortcut, self.norm, self.dtype)(x, train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))
        return logits.astype(jnp.float32)


# --model name -> the network's shape.
SHAPES = {
    "resnet18": dict(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), shortcut="projection"),
    "resnet20": dict(widths=(16, 32, 64), blocks=(3, 3, 3), shortcut="pad"),
}


def build(config: Config, num_classes: int, kernels: Any = None) -> CifarResNet:
    """The ResNet config.model names, its BatchNorm set by --norm_momentum and --norm_epsilon, in --dtype."""
    return CifarResNet(num_classes=num_classes, **SHAPES[config.model],
                       norm=Norm(axis=AXIS, momentum=config.norm_momentum, epsilon=config.norm_epsilon),
                       dtype=compute_dtype(config.dtype))
