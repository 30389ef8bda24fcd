"""Which implementation of each speed-critical piece a platform runs: one table, overridable by config.

Every choice computes the same function as the plain one (lax's convolution, `nn.max_pool`, a rolled
`lax.scan`), up to float rounding where stated, and is tested equal to it (tests/models/test_model.py,
tests/core/test_steps.py). The CPU row was measured on XLA:CPU (results/benchmark.md):
- image_conv "patch": a convolution over the image itself (at most 4 channels) as one patch matmul
  (jaxrec.models.conv); float rounding differs. eval_image_conv "lax": the forward pass alone, where
  XLA's convolution is the faster one at evaluation's batch sizes.
- conv_grad "lax": with jaxrec's XLA flags (jaxrec.runtime.xla_flags) XLA's own kernel gradient is the
  faster one on airbench94's layers (results/airbench94.md) and as fast on the article CNN's; "patch" stays a
  choice for XLAs without those kernels.
- pool "reshape_grad": max-pooling whose gradient is not `select_and_scatter`, a scalar loop on XLA:CPU
  (jaxrec.models.pooling). Bit-identical.
- batch_norm "matmul" (airbench94): BatchNorm's per-channel sums as matmuls (jaxrec.models.norm), not
  the windowed reductions XLA:CPU makes of them. Float rounding differs.
- steps_loop "unrolled": XLA:CPU runs convolutions in a while loop many times slower (jax#12868).
  Bit-identical to one step per call; the rolled loop is not quite (its body is compiled on its own).
GPUs and TPUs, whose convolutions and loops have no such problems, get lax's convolution and the rolled loop
(compiled once however many steps a call holds). GPUs keep pool "reshape_grad" for determinism, not speed: XLA's
GPU backend has no deterministic version of `nn.max_pool`'s scatter gradient; this one is elementwise selects.
The GPU and TPU rows are not measured.
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
    """--dtype as a jnp dtype: 'auto' is float32 on the CPU (no fast bfloat16 there), bfloat16 elsewhere."""
    if name == "auto":
        name = "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"
    return jnp.dtype(name)


# Models that compute in float32 whatever --dtype says (the settings check refuses bfloat16 for them).
FLOAT32_MODELS = ("cnn", "rnn")


def resolved_dtype(config: Config, platform: str | None = None) -> str:
    """The dtype name config's model computes in on `platform`: what --dtype auto meant, recorded with the run."""
    if config.model in FLOAT32_MODELS:
        return "float32"
    return compute_dtype(config.dtype, platform).name


def choose(config: Config, platform: str | None = None) -> Kernels:
    """The kernels a run of `config` uses on `platform`: the table's row, overridden by every knob not 'auto'."""
    row = for_platform(platform or jax.default_backend())
    chosen = {field.name: getattr(config, field.name) for field in dataclasses.fields(Kernels)}
    return dataclasses.replace(row, **{name: value for name, value in chosen.items() if value != "auto"})
