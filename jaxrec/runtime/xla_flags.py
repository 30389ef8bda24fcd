"""XLA:CPU compiler flags jaxrec sets before JAX's backend starts: which kernels run convolutions.

XLA:CPU can hand operations to the YNNPACK library. `--xla_cpu_experimental_ynn_fusion_type` takes the
list of what it hands over; since jaxlib 0.10.2 the default list is
`individual_dot,individual_convolution,reduce`, which sends float32 convolutions of more than 16
channels to YNNPACK. On a CPU those train several times slower than XLA's own convolution kernels
(results/conv_timing/README.md, from experiments/airbench_conv_timing.py). `=dot` replaces the list:
matmuls still go to YNNPACK, convolutions go back to XLA's kernels.

The flag is experimental, and an XLA that does not know a flag refuses to start, so it is set only on
the jaxlib versions listed, only when XLA_FLAGS does not already name it, and only with --cpu_ynn
(the default). It changes float rounding, not the math.
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
    """The flags to add to XLA_FLAGS for `config`, or None: asked for (--cpu_ynn), the YNN flag not
    already in XLA_FLAGS, and this jaxlib in CPU_FLAGS."""
    if not config.cpu_ynn or YNN_FLAG in environ.get("XLA_FLAGS", ""):
        return None
    return CPU_FLAGS.get(jaxlib_version())


def set_cpu_flags(config: Config, environ: MutableMapping[str, str] = os.environ) -> None:
    """Adds the `wanted` flags to XLA_FLAGS. Once JAX's backend has started, XLA has read its flags and
    this changes nothing (a notebook that already ran JAX keeps what it has)."""
    flags = wanted(config, environ)
    if flags:
        environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {flags}".strip()


__all__ = ["CPU_FLAGS", "YNN_FLAG", "set_cpu_flags", "wanted"]
