"""Convolution as one matrix multiply over image patches (im2col), for layers with few input channels.

XLA:CPU's convolution is slow when the input has only a few channels (an RGB or grayscale image):
the first layer of the article CNN took about as long as the next two, and its kernel gradient was
~3x slower than the same contraction written as a matmul. `patch_conv` computes the same
convolution as `lax.conv_general_dilated` (up to float rounding: the sums run in another order) by
stacking the kh*kw shifted copies of the padded input along the channels and multiplying by the
kernel reshaped to [kh*kw*in, out]. It has lax's signature, so it plugs into
`nn.Conv(conv_general_dilated=...)` and keeps the layer's parameters unchanged; cases it does not
cover (strides, dilation, groups, other layouts) fall through to lax.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax


def patch_conv(inputs: jax.Array, kernel: jax.Array, window_strides: Sequence[int], padding: Any,
               lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
               dimension_numbers: Any = None, feature_group_count: int = 1, precision: Any = None) -> jax.Array:
    """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels with stride 1, via im2col."""
    kwargs = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                  feature_group_count=feature_group_count, precision=precision)
    nhwc = lax.conv_dimension_numbers(inputs.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    simple = (inputs.ndim == 4 and tuple(window_strides) == (1, 1) and feature_group_count == 1
              and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
              and lax.conv_dimension_numbers(inputs.shape, kernel.shape, dimension_numbers) == nhwc)
    if not simple:
        return lax.conv_general_dilated(inputs, kernel, window_strides, padding, **kwargs)
    kh, kw, cin, cout = kernel.shape
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(inputs.shape[1:3], (kh, kw), (1, 1), padding)
    padded = jnp.pad(inputs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    b, height, width = inputs.shape[0], padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    # Channel order (dy, dx, c) matches the HWIO kernel's row-major reshape to [kh * kw * cin, cout].
    patches = jnp.concatenate([padded[:, dy:dy + height, dx:dx + width, :] for dy in range(kh) for dx in range(kw)],
                              axis=-1)
    out = jnp.dot(patches.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, cout), precision=precision)
    return out.reshape(b, height, width, cout)
