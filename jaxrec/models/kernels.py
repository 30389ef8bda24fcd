"""Which implementation of each speed-critical piece a platform runs: one table, overridable by config.

Every choice computes the same function as the plain one (lax's convolution, `nn.max_pool`, a rolled
`lax.scan`), up to float rounding where stated, and is tested equal to it (tests/models/test_model.py,
tests/core/test_steps.py). The CPU row was measured on XLA:CPU (results/benchmark.md):
- image_conv "patch": a convolution over the image itself (at most 4 channels) as one patch matmul
  (jaxrec.models.conv): XLA:CPU's convolution is slow on so few channels, in the backward pass
  above all. Float rounding differs. eval_image_conv "lax": evaluation and prediction run only the
  forward pass, where XLA's convolution is the faster one at these batch sizes.
- conv_grad "lax": with jaxrec's XLA flags (jaxrec.runtime.xla_flags) XLA's own kernel gradient is
  the faster one on airbench94's layers (results/airbench94.md); the article CNN trains as fast either
  way. "patch" (the kernel gradient as one patch matmul) stays a choice for XLAs without those
  kernels. Float rounding of the kernel gradient differs.
- pool "reshape_grad": max-pooling with a gradient built from a reshape or strided views
  (jaxrec.models.pooling), not `select_and_scatter`, a scalar loop on XLA:CPU. Bit-identical.
- batch_norm "matmul" (airbench94): BatchNorm's per-channel sums as matmuls (jaxrec.models.norm), not
  the windowed reductions XLA:CPU makes of them. Float rounding differs.
- steps_loop "unrolled": the steps of one device call unrolled, since XLA:CPU runs convolutions in
  a while loop many times slower (jax#12868). Bit-identical to one step per call; the rolled loop
  is not quite (its body is compiled on its own; tests/core/test_steps.py measures it).
GPUs and TPUs get lax's convolution and the rolled loop: their convolutions and loops have no such
problems, and a rolled loop compiles once however many steps a call holds. GPUs keep pool
"reshape_grad" for determinism, not speed: the gradient of `nn.max_pool` is a scatter that XLA's GPU
backend has no deterministic version of, while this one is elementwise selects. None of the GPU/TPU
choices is measured here (no accelerator was at hand).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrec.config import Config


@dataclasses.dataclass(frozen=True)
class Kernels:
    """One choice per piece: the values of the Config knobs of the same names, but 'auto'."""

    image_conv: str = "lax"
    eval_image_conv: str = "lax"
    conv_grad: str = "lax"
    pool: str = "lax"
    steps_loop: str = "rolled"
    batch_norm: str = "flax"


PLAIN = Kernels()
BY_PLATFORM = {"cpu": Kernels(image_conv="patch", pool="reshape_grad", steps_loop="unrolled", batch_norm="matmul"),
               "gpu": Kernels(pool="reshape_grad")}


def for_platform(platform: str) -> Kernels:
    """The table's row for a JAX platform name ('cpu', 'gpu', 'tpu', ...); PLAIN for one it lacks."""
    return BY_PLATFORM.get(platform, PLAIN)


def compute_dtype(name: str, platform: str | None = None) -> jnp.dtype:
    """--dtype as a jnp dtype: 'auto' is float32 on the CPU (no fast bfloat16 there) and bfloat16 on GPUs
    and TPUs (platform: default JAX's default backend)."""
    if name == "auto":
        name = "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"
    return jnp.dtype(name)


# Models that compute in float32 whatever --dtype says (the settings check refuses bfloat16 for them).
FLOAT32_MODELS = ("cnn", "rnn")


def resolved_dtype(config: Config, platform: str | None = None) -> str:
    """The name of the type config's model computes in on `platform` (default: JAX's default backend):
    what --dtype auto stands for there, recorded with the run so that it says what it did."""
    if config.model in FLOAT32_MODELS:
        return "float32"
    return compute_dtype(config.dtype, platform).name


def choose(config: Config, platform: str | None = None) -> Kernels:
    """The kernels a run of `config` uses on `platform` (default: JAX's default backend): the table's
    row, with every knob not left at 'auto' taking its place."""
    row = for_platform(platform or jax.default_backend())
    chosen = {field.name: getattr(config, field.name) for field in dataclasses.fields(Kernels)}
    return dataclasses.replace(row, **{name: value for name, value in chosen.items() if value != "auto"})
