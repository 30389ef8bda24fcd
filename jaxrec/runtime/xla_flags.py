"""XLA:CPU compiler flags jaxrec sets before JAX's backend starts: which kernels run convolutions.

`--xla_cpu_experimental_ynn_fusion_type` lists what XLA:CPU hands to the YNNPACK library. Since jaxlib 0.10.2
its default, `individual_dot,individual_convolution,reduce`, sends float32 convolutions of more than 16 channels
there, which train several times slower on a CPU than XLA's own kernels (results/conv_timing/README.md). `=dot`
replaces the list: matmuls still go to YNNPACK, convolutions go back to XLA's kernels.

The flag is experimental, and an XLA that does not know a flag refuses to start, so it is set only on the listed
jaxlibs, only when XLA_FLAGS does not name it, and only with --cpu_ynn (the default). It changes rounding, not math.
"""

from __future__ import annotations

import os
from typing import MutableMapping

from jaxrec.config import Config

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib (major, minor) -> the flags that train convolutions fastest there (docs/speed.md).
CPU_FLAGS = {(0, 10): f"{YNN_FLAG}=dot", (0, 11): f"{YNN_FLAG}=dot", (0, 12): f"{YNN_FLAG}=dot"}


def jaxlib_version() -> tuple[int, int]:
    import jaxlib  # noqa: PLC0415 - only its version

    major, minor = jaxlib.__version__.split(".")[:2]
    return int(major), int(minor)


def wanted(config: Config, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """The flags to add to XLA_FLAGS for `config`, or None (no --cpu_ynn, already named, or an unlisted jaxlib)."""
    if not config.cpu_ynn or YNN_FLAG in environ.get("XLA_FLAGS", ""):
        return None
    return CPU_FLAGS.get(jaxlib_version())


def set_cpu_flags(config: Config, environ: MutableMapping[str, str] = os.environ) -> None:
    """Adds the `wanted` flags to XLA_FLAGS (in vain once JAX's backend has started: XLA has read its flags)."""
    flags = wanted(config, environ)
    if flags:
        environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {flags}".strip()
