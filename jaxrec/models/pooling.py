"""Max-pooling whose gradient avoids `select_and_scatter`, a scalar loop on XLA:CPU: `nn.max_pool`'s values and
gradients, ties included (docs/speed.md, "Kernels per platform", --pool). A window holding a NaN gets no gradient."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def _windows(x: jax.Array) -> jax.Array:
    """[b, 2h, 2w, c] -> [4, b, h, w, c]: the window positions (0,0), (0,1), (1,0), (1,1)."""
    b, height, width, c = x.shape
    x = x.reshape(b, height // 2, 2, width // 2, 2, c)
    return x.transpose(2, 4, 0, 1, 3, 5).reshape(4, b, height // 2, width // 2, c)


def _unwindows(parts: jax.Array) -> jax.Array:
    """Inverse of `_windows`."""
    _, b, h, w, c = parts.shape
    return parts.reshape(2, 2, b, h, w, c).transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * h, 2 * w, c)


@jax.custom_vjp
def _pool_even(x: jax.Array) -> jax.Array:
    # The forward stays reduce_window: at eval batch sizes it is the faster one on XLA:CPU.
    return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def _pool_even_fwd(x: jax.Array):
    y = _pool_even(x)
    return y, (x, y)


def _pool_even_bwd(residuals, g: jax.Array):
    x, y = residuals
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for window in _windows(x):  # select_and_scatter's rule: the first maximum in row-major order takes it all
        hit = (window == y) & ~taken
        taken = taken | hit
        parts.append(jnp.where(hit, g, jnp.zeros_like(g)))
    return (_unwindows(jnp.stack(parts)),)


_pool_even.defvjp(_pool_even_fwd, _pool_even_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, 'SAME' padding (ceil mode) over [batch, height, width, channels]: an odd side
    is padded with -inf, so its last row/column forms its own (half) window instead of being dropped."""
    _, height, width, _ = x.shape
    if height % 2 or width % 2:
        x = jnp.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), constant_values=-jnp.inf)
    return _pool_even(x)


def _window_views(x: jax.Array, k: int) -> list[jax.Array]:
    """The k * k strided views [b, h, w, c] of x [b, >= k h, >= k w, c], one per window position in row-major
    order: no copies, so XLA fuses them into what reads them."""
    _, height, width, _ = x.shape
    h, w = height // k, width // k
    return [x[:, dy:dy + k * h:k, dx:dx + k * w:k, :] for dy in range(k) for dx in range(k)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _pool_floor(x: jax.Array, k: int) -> jax.Array:
    return functools.reduce(jnp.maximum, _window_views(x, k))


def _pool_floor_fwd(x: jax.Array, k: int):
    y = _pool_floor(x, k)
    return y, (x, y)


def _pool_floor_bwd(k: int, residuals, g: jax.Array):
    x, y = residuals
    _, height, width, _ = x.shape
    h, w = y.shape[1:3]
    taken = jnp.zeros(y.shape, bool)
    grad = jnp.zeros(x.shape, g.dtype)
    for position, window in enumerate(_window_views(x, k)):  # the first maximum in row-major order takes it
        hit = (window == y) & ~taken
        taken = taken | hit
        dy, dx = divmod(position, k)
        # Back to x's positions: interior padding spreads the view out to every k-th row and column.
        pads = [(0, 0, 0), (dy, height - dy - (k * (h - 1) + 1), k - 1), (dx, width - dx - (k * (w - 1) + 1), k - 1),
                (0, 0, 0)]
        grad = grad + jax.lax.pad(jnp.where(hit, g, jnp.zeros_like(g)), jnp.zeros((), g.dtype), pads)
    return (grad,)


_pool_floor.defvjp(_pool_floor_fwd, _pool_floor_bwd)


def max_pool_floor(x: jax.Array, k: int) -> jax.Array:
    """k x k max-pool, stride k, 'VALID' padding (floor mode, PyTorch's MaxPool2d(k)): the values and gradient
    of nn.max_pool(x, (k, k), (k, k), 'VALID'), from strided views and interior padding that XLA fuses into
    elementwise loops: no window reduction, no scatter, no copy of the cropped input."""
    return _pool_floor(x, k)
