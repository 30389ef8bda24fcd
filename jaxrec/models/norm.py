"""BatchNorm whose per-channel sums are matmuls, ones x [b h w, c], where XLA:CPU makes the reductions slow windowed
partial sums; flax's BatchNorm up to rounding: docs/speed.md, "Kernels per platform" (--batch_norm)."""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# A BatchNorm layer's module name: flax's default (BatchNorm_0, ...) or airbench94's (norm1, norm2).
# --norm_bias_lr_scale scales the learning rate of these layers' biases (jaxrec.core.optim).
NORM_MODULE = re.compile(r"^(BatchNorm_\d+|norm\d*)$")


def is_norm_bias(names: Sequence[str]) -> bool:
    """Whether the parameter at the module path `names` is a BatchNorm layer's bias (NORM_MODULE)."""
    return len(names) > 1 and names[-1] == "bias" and bool(NORM_MODULE.match(names[-2]))


def path_names(path: Sequence[Any]) -> list[str]:
    """A jax.tree_util key path as its module and parameter names."""
    return [str(getattr(key, "key", key)) for key in path]


@jax.custom_vjp
def channel_sum(x: jax.Array) -> jax.Array:
    """The sum of x [..., c] over every axis but the last, as ones @ x.reshape(-1, c)."""
    flat = x.reshape(-1, x.shape[-1])
    return jnp.ones((flat.shape[0],), x.dtype) @ flat


def _channel_sum_fwd(x: jax.Array):
    return channel_sum(x), x.shape


def _channel_sum_bwd(shape: Sequence[int], g: jax.Array):
    return (jnp.broadcast_to(g, shape),)


channel_sum.defvjp(_channel_sum_fwd, _channel_sum_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def broadcast_channels(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A per-channel vector v [c] broadcast to `shape` [..., c]; its gradient is a channel_sum."""
    return jnp.broadcast_to(v, shape)


def _broadcast_fwd(v: jax.Array, shape: tuple[int, ...]):
    return broadcast_channels(v, shape), None


def _broadcast_bwd(shape: tuple[int, ...], _, g: jax.Array):
    return (channel_sum(g),)


broadcast_channels.defvjp(_broadcast_fwd, _broadcast_bwd)


class MatmulBatchNorm(nn.Module):
    """flax.linen.BatchNorm over the last axis: the same variables, statistics and running averages, up to rounding."""

    use_running_average: bool = False
    momentum: float = 0.99
    epsilon: float = 1e-5
    use_scale: bool = True
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if self.use_running_average:
            batch_mean, batch_var = mean.value, var.value
        else:
            count = x.size // features
            moments = jnp.stack([channel_sum(x), channel_sum(x * x)]) / count
            if self.axis_name is not None:
                moments = jax.lax.pmean(moments, self.axis_name)
            batch_mean, batch_var = moments[0], jnp.maximum(0.0, moments[1] - moments[0] ** 2)
            if not self.is_initializing():
                mean.value = self.momentum * mean.value + (1 - self.momentum) * batch_mean
                var.value = self.momentum * var.value + (1 - self.momentum) * batch_var
        multiplier = jax.lax.rsqrt(batch_var + self.epsilon)
        if self.use_scale:
            multiplier = multiplier * self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        y = (x - broadcast_channels(batch_mean, x.shape)) * broadcast_channels(multiplier, x.shape)
        return y + broadcast_channels(self.param("bias", nn.initializers.zeros, (features,), jnp.float32), x.shape)
