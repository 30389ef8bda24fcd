"""Convolutions as one matmul over image patches (im2col), with `lax.conv_general_dilated`'s signature, for where
XLA:CPU's own are slow: docs/speed.md, "Kernels per platform" (--image_conv, --conv_grad)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax


def patch_conv(inputs: jax.Array, kernel: jax.Array, window_strides: Sequence[int], padding: Any,
               **options: Any) -> jax.Array:
    """`lax.conv_general_dilated` as one patch matmul (for NHWC inputs, HWIO kernels and stride 1)."""
    if not _is_simple(inputs, kernel, window_strides, options):
        return lax.conv_general_dilated(inputs, kernel, window_strides, padding, **options)
    kh, kw, cin, cout = kernel.shape
    patches = _patches(inputs, (kh, kw), _pads(inputs, kernel, padding))
    out = jnp.dot(patches.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, cout),
                  precision=options.get("precision"))
    return out.reshape(*patches.shape[:3], cout)


def _is_simple(inputs: jax.Array, kernel: jax.Array, window_strides: Sequence[int], options: dict[str, Any]) -> bool:
    """Whether the patch forms cover the call: NHWC, HWIO, stride 1, no dilation, groups or other output type."""
    nhwc = lax.conv_dimension_numbers(inputs.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    dilations = (options.get("lhs_dilation"), options.get("rhs_dilation"))
    return (inputs.ndim == 4 and tuple(window_strides) == (1, 1) and options.get("feature_group_count", 1) == 1
            and all(d is None or tuple(d) == (1, 1) for d in dilations)
            and options.get("preferred_element_type") is None
            and lax.conv_dimension_numbers(inputs.shape, kernel.shape, options.get("dimension_numbers")) == nhwc)


def _pads(inputs: jax.Array, kernel: jax.Array, padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit (low, high) padding of the two spatial dimensions."""
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(inputs.shape[1:3], kernel.shape[:2], (1, 1), padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _patches(inputs: jax.Array, window: tuple[int, int], pads: Any) -> jax.Array:
    """[b, h, w, kh * kw * c]: the kh*kw shifted copies of the padded input, stacked on the channels
    in (dy, dx, c) order, which matches an HWIO kernel's row-major reshape to [kh * kw * c, out]."""
    (kh, kw), padded = window, jnp.pad(inputs, ((0, 0), pads[0], pads[1], (0, 0)))
    height, width = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    return jnp.concatenate([padded[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)],
                           axis=-1)


def patch_grad_conv(inputs: jax.Array, kernel: jax.Array, window_strides: Sequence[int], padding: Any,
                    **options: Any) -> jax.Array:
    """`lax.conv_general_dilated` whose kernel gradient is one patch matmul, [kh*kw*in, b*h*w] x [b*h*w, out]:
    XLA:CPU computes it as a convolution whose window is the whole image, which spreads poorly over cores
    (results/cpu_kernels.md)."""
    if not _is_simple(inputs, kernel, window_strides, options):
        return lax.conv_general_dilated(inputs, kernel, window_strides, padding, **options)
    return _conv_patch_grad(inputs, kernel, _pads(inputs, kernel, padding), options.get("precision"))


def _nhwc_conv(inputs: jax.Array, kernel: jax.Array, pads: Any, precision: Any) -> jax.Array:
    return lax.conv_general_dilated(inputs, kernel, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_patch_grad(inputs: jax.Array, kernel: jax.Array, pads: Any, precision: Any) -> jax.Array:
    return _nhwc_conv(inputs, kernel, pads, precision)


def _conv_patch_grad_fwd(inputs, kernel, pads, precision):
    return _nhwc_conv(inputs, kernel, pads, precision), (inputs, kernel)


def _conv_patch_grad_bwd(pads, precision, residuals, grad):
    inputs, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _nhwc_conv(x, kernel, pads, precision), inputs)
    kh, kw, cin, cout = kernel.shape
    patches = _patches(inputs, (kh, kw), pads).reshape(-1, kh * kw * cin)
    kernel_grad = jnp.dot(patches.T, grad.reshape(-1, cout), precision=precision).reshape(kernel.shape)
    return input_vjp(grad)[0], kernel_grad.astype(kernel.dtype)


_conv_patch_grad.defvjp(_conv_patch_grad_fwd, _conv_patch_grad_bwd)
