"""Which implementation of each speed-critical piece a platform runs: one table (BY_PLATFORM), each choice
overridable by a Config knob of its name. Which, why, and how equal to the plain one: docs/speed.md's table."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrec.config import Config
from jaxrec.models.recipes import load


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


def resolved_dtype(config: Config, platform: str | None = None) -> str:
    """The dtype name config's model computes in on `platform`: what --dtype auto meant, recorded with the run."""
    if load(config.model).facts["FLOAT32"]:  # its recipe computes in float32 whatever --dtype says
        return "float32"
    return compute_dtype(config.dtype, platform).name


def choose(config: Config, platform: str | None = None) -> Kernels:
    """The kernels a run of `config` uses on `platform`: the table's row, overridden by every knob not 'auto'."""
    row = for_platform(platform or jax.default_backend())
    chosen = {field.name: getattr(config, field.name) for field in dataclasses.fields(Kernels)}
    return dataclasses.replace(row, **{name: value for name, value in chosen.items() if value != "auto"})
