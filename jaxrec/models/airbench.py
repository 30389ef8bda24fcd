"""airbench94 (Keller Jordan, cifar10-airbench, legacy/airbench94.py): its network and recipe, ingredient by
ingredient in docs/models.md, "airbench94"."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import Config, above, at_least, knob
from jaxrec.models import AXIS
from jaxrec.models.conv import patch_conv, patch_grad_conv
from jaxrec.models.kernels import Kernels, compute_dtype
from jaxrec.models.norm import MatmulBatchNorm
from jaxrec.models.pooling import max_pool_floor
from jaxrec.models.recipes import recipe_knobs

# The reference's settings (legacy/airbench94.py), the defaults of --model airbench94.
DEFAULTS = dict(
    # Data and augmentation: batch 1024, last partial batch dropped (48 steps per epoch), 9.9 epochs.
    batch_size=1024, epochs=9.9, translate=2, flip="alternating",
    # Network: conv groups of 64/256/256, BatchNorm without scale (the whitening layer: Knobs).
    conv_features=(64, 256, 256), norm_momentum=0.6, norm_epsilon=1e-12,
    # Loss and optimiser: summed label-smoothed cross-entropy, Nesterov SGD in decoupled form.
    label_smoothing=0.2, loss_reduction="sum", learning_rate=11.5, momentum=0.85, nesterov=True,
    weight_decay=0.0153, decoupled=True, norm_bias_lr_scale=64.0,
    lr_schedule="linear", warmup_fraction=0.23, warmup_start=0.2, final_lr_fraction=0.07,
    # Weight averaging and evaluation.
    lookahead=True, lookahead_every=5, lookahead_decay=0.95, tta=2,
    # Evaluated in batches the reference uses; evaluation pads the last one.
    eval_batch_size=1000,
)


@dataclasses.dataclass(frozen=True)
class Knobs:
    """airbench94's own settings (flags of `--model airbench94`), at the reference's values."""

    whiten: bool = knob(True, "The first layer's 2x2 filters are the whitening filters of the patch covariance of "
                              "--whiten_images training images, frozen (false: an ordinary learnt convolution).")
    whiten_images: int = knob(5000, "Training images (drawn with the init seed) whose 2x2 patches give the "
                                    "whitening filters (--whiten).", at_least(1))
    whiten_bias_epochs: float = knob(3, "With --whiten: the whitening layer's bias trains for this many epochs, "
                                        "then stays.", at_least(0))
    dirac_init: bool = knob(True, "Each convolution's first C_in filters start as the identity (the rest as "
                                  "PyTorch's default).")
    logit_scale: float = knob(1 / 9, "The logits are multiplied by this.", above(0))


AIRBENCH_WHITEN_SIZE = 2  # the whitening convolution's kernel, without padding: one pixel fewer per side
AIRBENCH_GROUP_POOL = 2   # each conv group's max-pool, floor mode
AIRBENCH_FINAL_POOL = 3   # the max-pool before the classifier, floor mode


def airbench_smallest_image(groups: int) -> int:
    """The smallest side airbench94 takes with `groups` conv groups: the final pool needs a full window, each
    group's pool halves the side (so doubles what it needs), and the whitening convolution takes one pixel."""
    return AIRBENCH_FINAL_POOL * AIRBENCH_GROUP_POOL ** groups + AIRBENCH_WHITEN_SIZE - 1


def image_size_problem(config: Config, height: int, width: int, where: str) -> str | None:
    """recipes.image_size_problem for airbench94: its floor-mode pools leave no features of too small an image."""
    smallest = airbench_smallest_image(len(config.conv_features))
    if min(height, width) >= smallest:
        return None
    groups = len(config.conv_features)
    fewer = (f", or fewer conv groups (--conv_features with {groups - 1} widths takes "
             f"{airbench_smallest_image(groups - 1)}x{airbench_smallest_image(groups - 1)})" if groups > 1 else "")
    return (f"{where}: {height}x{width} images are too small for --model {config.model} with {groups} conv groups, "
            f"whose pools would leave no features; it takes at least {smallest}x{smallest} pixels: pass "
            f"--image_size {smallest} or more{fewer}")


# PyTorch's default for Conv2d and Linear weights: uniform in +-1/sqrt(fan_in).
TORCH_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
WHITEN_EPSILON = 5e-4  # added to the patch covariance's eigenvalues before the 1/sqrt


def dirac_init() -> Any:
    """TORCH_INIT, then the first C_in filters of an HWIO kernel set to the identity (torch.nn.init.dirac_
    on weight[:C_in]): the filter for output channel i passes input channel i through unchanged."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        kernel = TORCH_INIT(key, shape, dtype)
        kh, kw, cin, cout = shape
        n = min(cin, cout)
        identity = jnp.zeros((kh, kw, cin, n), dtype).at[kh // 2, kw // 2, jnp.arange(n), jnp.arange(n)].set(1)
        return kernel.at[..., :n].set(identity)

    return init


def gelu(x: jax.Array) -> jax.Array:
    return nn.gelu(x, approximate=False)  # the exact erf form: torch.nn.GELU's default, the reference's


def pool(x: jax.Array, k: int, kind: str) -> jax.Array:
    """k x k max-pool in floor mode: lax's (nn.max_pool) or the same with a reshape gradient (--pool)."""
    return max_pool_floor(x, k) if kind == "reshape_grad" else nn.max_pool(x, (k, k), (k, k), "VALID")


class Whiten(nn.Module):
    """The 2x2 convolution (no padding, with bias) over the image. Frozen, its filters get no gradient
    at all (not one computed and thrown away): the optimizer never moves them (jaxrec.core.optim)."""

    features: int
    frozen: bool
    dirac: bool
    image_conv: str
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (AIRBENCH_WHITEN_SIZE, AIRBENCH_WHITEN_SIZE, x.shape[-1], self.features)
        kernel = self.param("kernel", dirac_init() if self.dirac else TORCH_INIT, shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.frozen:
            kernel = jax.lax.stop_gradient(kernel)
        conv = patch_conv if self.image_conv == "patch" else jax.lax.conv_general_dilated
        y = conv(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1), "VALID",
                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(self.dtype)


class ConvGroup(nn.Module):
    """3x3 conv -> 2x2 max-pool (floor) -> BN -> GELU -> 3x3 conv -> BN -> GELU."""

    features: int
    norm_momentum: float
    norm_epsilon: float
    norm_axis: str | None
    dirac: bool
    conv_grad: str
    pool: str
    batch_norm: str
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.conv("conv1")(x)
        x = pool(x, AIRBENCH_GROUP_POOL, self.pool)
        x = gelu(self.norm("norm1", train)(x))
        return gelu(self.norm("norm2", train)(self.conv("conv2")(x)))

    def conv(self, name: str) -> nn.Conv:
        return nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, name=name, dtype=self.dtype,
                       kernel_init=dirac_init() if self.dirac else TORCH_INIT,
                       conv_general_dilated=patch_grad_conv if self.conv_grad == "patch" else None)

    def norm(self, name: str, train: bool) -> nn.Module:
        layer = MatmulBatchNorm if self.batch_norm == "matmul" else nn.BatchNorm
        return layer(use_running_average=not train, momentum=self.norm_momentum, epsilon=self.norm_epsilon,
                     use_scale=False, axis_name=self.norm_axis if train else None, name=name)


class Airbench94(nn.Module):
    """airbench94's network (docs/models.md); `init_from_data` sets the whitening filters. It takes images
    of at least airbench_smallest_image(len(widths)) pixels a side (25 for three groups)."""

    num_classes: int
    widths: Sequence[int] = (64, 256, 256)
    norm_momentum: float = 0.6
    norm_epsilon: float = 1e-12
    norm_axis: str | None = None
    logit_scale: float = 1.0 / 9.0
    dirac: bool = True
    whiten: bool = True  # the first layer's filters come from the data, and stay frozen
    whiten_images: int = 5000
    whiten_bias_epochs: float = 3
    image_conv: str = "lax"
    conv_grad: str = "lax"
    pool: str = "lax"
    batch_norm: str = "flax"  # or "matmul": jaxrec.models.norm.MatmulBatchNorm
    dtype: Any = jnp.float32  # of the convolutions and the matmul; parameters and BN statistics stay float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Maps float images [batch, height, width, channels] to logits [batch, num_classes]."""
        channels = x.shape[-1]
        x = Whiten(2 * 4 * channels, frozen=self.whiten, dirac=self.dirac, image_conv=self.image_conv,
                   dtype=self.dtype, name="whiten")(x)
        x = gelu(x)
        for i, features in enumerate(self.widths):
            x = ConvGroup(features, self.norm_momentum, self.norm_epsilon, self.norm_axis, self.dirac,
                          self.conv_grad, self.pool, self.batch_norm, self.dtype, name=f"group{i + 1}")(x, train)
        x = pool(x, AIRBENCH_FINAL_POOL, self.pool)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.num_classes, use_bias=False, kernel_init=TORCH_INIT, name="head", dtype=self.dtype)(x)
        return x.astype(jnp.float32) * self.logit_scale

    @property
    def init_examples(self) -> int:
        """How many training images init_from_data reads (0: none)."""
        return self.whiten_images if self.whiten else 0

    def partly_trained(self) -> dict[str, float]:
        """The parameters that train for part of the run only, by path, with their epochs (0: frozen)."""
        return {"whiten/kernel": 0, "whiten/bias": self.whiten_bias_epochs} if self.whiten else {}

    def init_from_data(self, variables: dict[str, Any], images: np.ndarray) -> dict[str, Any]:
        """`variables` with the whitening filters computed from `images` (normalised, [n, H, W, C]) if whiten is on."""
        if not self.whiten:
            return variables
        params = dict(variables["params"])
        params["whiten"] = {**params["whiten"], "kernel": jnp.asarray(whitening_kernel(images, AIRBENCH_WHITEN_SIZE))}
        return {**variables, "params": params}


def patch_covariance(images: np.ndarray, size: int = 2, chunk: int = 500) -> np.ndarray:
    """X^T X / n over every size x size patch of `images` [n, H, W, C] (no mean subtracted), in
    float64; a patch flattens in (C, h, w) order, PyTorch's filter layout."""
    n, height, width, channels = images.shape
    dim = channels * size * size
    total, count = np.zeros((dim, dim)), 0
    for start in range(0, n, chunk):
        x = np.asarray(images[start:start + chunk], np.float64)
        patches = np.stack([x[:, dy:height - size + 1 + dy, dx:width - size + 1 + dx, :]
                            for dy in range(size) for dx in range(size)], axis=-1)  # [b, h', w', C, size*size]
        flat = patches.reshape(-1, dim)
        total += flat.T @ flat
        count += len(flat)
    return total / count


def whitening_kernel(images: np.ndarray, size: int = 2, epsilon: float = WHITEN_EPSILON) -> np.ndarray:
    """The whitening filters, HWIO float32 [size, size, C, 2 * C * size^2]: the patch covariance's eigenvectors
    (largest eigenvalue first), each scaled by 1/sqrt(eigenvalue + epsilon), then their negatives. Each sign
    (LAPACK's choice) is fixed by making the largest entry positive, so the filters are one function of the images."""
    eigenvalues, eigenvectors = np.linalg.eigh(patch_covariance(images, size))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1].T  # rows, largest first
    signs = np.sign(eigenvectors[np.arange(len(eigenvectors)), np.argmax(np.abs(eigenvectors), axis=1)])
    filters = eigenvectors * signs[:, None] / np.sqrt(eigenvalues + epsilon)[:, None]
    channels = images.shape[-1]
    filters = filters.reshape(-1, channels, size, size)  # [out, C, h, w], PyTorch's layout
    filters = np.concatenate([filters, -filters])
    return np.ascontiguousarray(filters.transpose(2, 3, 1, 0), np.float32)


def build(config: Config, num_classes: int, kernels: Kernels) -> Airbench94:
    """airbench94 as `config` and its knobs set it (--conv_features for the widths), with the platform's kernels."""
    knobs = recipe_knobs(config)
    return Airbench94(num_classes=num_classes, widths=tuple(config.conv_features),
                      norm_momentum=config.norm_momentum, norm_epsilon=config.norm_epsilon, norm_axis=AXIS,
                      logit_scale=knobs.logit_scale, dirac=knobs.dirac_init, whiten=knobs.whiten,
                      whiten_images=knobs.whiten_images, whiten_bias_epochs=knobs.whiten_bias_epochs,
                      image_conv=kernels.image_conv, conv_grad=kernels.conv_grad, pool=kernels.pool,
                      batch_norm=kernels.batch_norm, dtype=compute_dtype(config.dtype))
