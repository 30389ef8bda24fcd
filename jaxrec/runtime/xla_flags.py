"""XLA:CPU flags set before JAX's backend starts: `--xla_cpu_experimental_ynn_fusion_type=dot` keeps convolutions
off YNNPACK. Why, on which jaxlibs and when not: docs/speed.md, "XLA:CPU's kernels for convolutions"."""

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
