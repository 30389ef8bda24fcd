"""Facts about the host process that results record."""

from __future__ import annotations

import resource
import sys


def peak_host_memory_mb() -> float:
    """This process's peak resident host memory so far, in MB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
