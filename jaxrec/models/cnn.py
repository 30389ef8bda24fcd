"""The article's convolutional network, in Flax linen."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax

from jaxrec.config import Config
from jaxrec.models import AXIS
from jaxrec.models.conv import patch_conv, patch_grad_conv
from jaxrec.models.kernels import Kernels
from jaxrec.models.pooling import max_pool_2x2

FLOAT32 = True  # it takes no --dtype: its layers compute in float32
READS_NORM = True  # --norm batch puts BatchNorm after each convolution

# image_conv="patch" applies to convolutions over inputs with at most this many channels (the image itself).
PATCH_CONV_MAX_CHANNELS = 4


class ArticleCNN(nn.Module):
    """Four [3x3 conv -> ReLU -> 2x2 max-pool] blocks, then Dense -> ReLU -> Dense: with the defaults the article's
    network, whose first dense layer infers its input size (README). Pooling is 'SAME' (ceil mode), so images as
    small as 1x1 leave a 1x1 map after four pools. `norm_axis`: the device axis BatchNorm's train-mode statistics
    average over (None: one device under plain jit)."""

    num_classes: int
    conv_features: Sequence[int] = (32, 64, 128, 128)
    dense_features: int = 512
    image_conv: str = "lax"  # or "patch": jaxrec.models.conv.patch_conv for inputs of few channels
    conv_grad: str = "lax"  # or "patch": the other convolutions via jaxrec.models.conv.patch_grad_conv
    pool: str = "lax"  # or "reshape_grad": jaxrec.models.pooling.max_pool_2x2
    norm: str = "none"  # or "batch"
    norm_axis: str | None = None
    norm_momentum: float = 0.9
    norm_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Maps float images [batch, height, width, channels] to logits [batch, num_classes]."""
        batch_norm = self.norm == "batch"
        for features in self.conv_features:
            x = nn.Conv(features, kernel_size=(3, 3), padding="SAME", use_bias=not batch_norm,
                        conv_general_dilated=self._conv_for(x))(x)
            if batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.norm_momentum,
                                 epsilon=self.norm_epsilon, axis_name=self.norm_axis if train else None)(x)
            x = nn.relu(x)
            x = max_pool_2x2(x) if self.pool == "reshape_grad" else nn.max_pool(x, (2, 2), (2, 2), "SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.dense_features)(x))
        return nn.Dense(self.num_classes)(x)

    def _conv_for(self, x: jax.Array) -> Callable | None:
        """The convolution function for input x (None: lax's, nn.Conv's default)."""
        if x.shape[-1] <= PATCH_CONV_MAX_CHANNELS:
            return patch_conv if self.image_conv == "patch" else None
        return patch_grad_conv if self.conv_grad == "patch" else None


def build(config: Config, num_classes: int, kernels: Kernels) -> ArticleCNN:
    """The article's CNN as `config` sets it, with the platform's `kernels`."""
    return ArticleCNN(num_classes=num_classes, conv_features=tuple(config.conv_features),
                      dense_features=config.dense_features, image_conv=kernels.image_conv,
                      conv_grad=kernels.conv_grad, pool=kernels.pool, norm=config.norm, norm_axis=AXIS,
                      norm_momentum=config.norm_momentum, norm_epsilon=config.norm_epsilon)
