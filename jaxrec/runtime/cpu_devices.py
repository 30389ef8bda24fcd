"""How many JAX devices the CPU is split into (one per core by default), set before JAX's backend starts. Why, and
which count set by the user wins: docs/speed.md, "One JAX device per CPU core"."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import jax

from jaxrec.config import Config
from jaxrec.config.rules import cores_available
from jaxrec.errors import InputError
from jaxrec.runtime.supervisor import wanted

COUNT_FLAG = "--xla_force_host_platform_device_count"


def per_core_count(num_cores: int, batch_sizes: Sequence[int]) -> int:
    """The most devices, at most one per core, over which every batch size splits evenly."""
    return max(d for d in range(1, max(num_cores, 1) + 1) if all(size % d == 0 for size in batch_sizes))


def configured_count() -> int:
    """JAX's jax_num_cpu_devices setting (-1: not set)."""
    return jax.config.jax_num_cpu_devices


def set_elsewhere(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user already set the CPU device count (in XLA_FLAGS, or as jax_num_cpu_devices)."""
    return COUNT_FLAG in environ.get("XLA_FLAGS", "") or configured_count() != -1


def wanted_count(config: Config, batch_sizes: Sequence[int], environ: Mapping[str, str] = os.environ,
                 num_cores: int | None = None) -> int | None:
    """The CPU device count this run should set, or None to leave JAX's (the user's, or a multi-process run's)."""
    if config.cpu_devices:
        return config.cpu_devices
    if set_elsewhere(environ) or wanted(config, environ):
        return None
    return per_core_count(cores_available() if num_cores is None else num_cores, batch_sizes)


def split_host(config: Config, batch_sizes: Sequence[int], environ: Mapping[str, str] = os.environ) -> None:
    """Sets the `wanted_count` CPU device count if JAX has not started. Once it has, the count is fixed: a differing
    --cpu_devices is refused in one line (a notebook must restart its runtime); the automatic count keeps JAX's."""
    count = wanted_count(config, batch_sizes, environ)
    if count is None or count == configured_count():
        return
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend has started
        have = len(jax.devices("cpu"))
        if config.cpu_devices and config.cpu_devices != have:
            raise InputError(f"--cpu_devices {config.cpu_devices}: JAX has already started with {have} CPU "
                             f"device(s) in this process; restart it (a notebook: restart the runtime) or use "
                             f"--cpu_devices 0") from None
