"""XLA:CPU compiler flags jaxrec sets before JAX's backend starts: YNNPACK for matmuls and convolutions.

With `--xla_cpu_experimental_ynn_fusion_type=dot` XLA:CPU hands its dots and convolutions to
YNNPACK. On airbench94's 64- and 256-channel convolutions, forward and both gradients, that is what
separates XLA:CPU from PyTorch's oneDNN (results/airbench94.md); the article CNN trains as fast
either way. The flag is experimental and exists in the jaxlib versions of YNN_JAXLIB (an XLA that
does not know a flag refuses to start), so it is set only there, only when XLA_FLAGS does not
already name it, and only with --cpu_ynn (the default). It changes float rounding, not the math.
"""

from __future__ import annotations

import os
from typing import MutableMapping

from jaxrec.config import Config

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_JAXLIB = ((0, 10),)  # jaxlib (major, minor) versions known to have the flag


def jaxlib_version() -> tuple[int, int]:
    import jaxlib  # noqa: PLC0415 - only its version

    major, minor = jaxlib.__version__.split(".")[:2]
    return int(major), int(minor)


def wanted(config: Config, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether to add the YNN flag for `config`: asked for, unset in XLA_FLAGS, and known to this jaxlib."""
    return config.cpu_ynn and YNN_FLAG not in environ.get("XLA_FLAGS", "") and jaxlib_version() in YNN_JAXLIB


def set_cpu_flags(config: Config, environ: MutableMapping[str, str] = os.environ) -> None:
    """Adds the YNN flag to XLA_FLAGS when `wanted`. Once JAX's backend has started, XLA has read its
    flags and this changes nothing (a notebook that already ran JAX keeps what it has)."""
    if wanted(config, environ):
        environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {YNN_FLAG}=dot".strip()


__all__ = ["YNN_FLAG", "YNN_JAXLIB", "set_cpu_flags", "wanted"]
