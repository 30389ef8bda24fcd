"""Facts about the machine and the process that results record: library versions, devices, memory."""

from __future__ import annotations

import importlib.metadata
import platform
import resource
import sys
from typing import Any

import jax

from jaxrec.config.rules import cores_available

# Pillow decodes every image jaxrec reads (folders, and TFDS sets through their data source).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "tensorflow-datasets", "numpy", "pillow")


def versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on, plus Python's."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    """The accelerator platform, device kind and count, processor, the cores this process may use, host name."""
    devices = jax.local_devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "local_devices": len(devices), "processor": platform.processor() or platform.machine(),
            "cpu_cores": cores_available(), "host": platform.node()}


def peak_host_memory_mb() -> float:
    """This process's peak resident host memory so far, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
