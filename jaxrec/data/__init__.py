"""Data: loading splits into memory (sources: image folders, TFDS sets through tfds_source, the
shipped sample), decoding images (decode), streaming (stream), and
preparing TFDS sets (tfds_prepare, which imports no JAX: `jaxrec prepare` runs beside a separate
TensorFlow). Nothing is imported until it is used, so tfds_prepare stays free of JAX."""

from __future__ import annotations

import importlib
from typing import Any

# Names this package exports from the modules that hold them, loaded on first use.
_LAZY = {"SAMPLE_ROOT": "jaxrec.data.sources", "load_data": "jaxrec.data.sources",
         "ArrayDataset": "jaxrec.data.types", "DataError": "jaxrec.data.types", "DataSplits": "jaxrec.data.types"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxrec.data' has no attribute {name!r}")


__all__ = ["ArrayDataset", "DataError", "DataSplits", "SAMPLE_ROOT", "load_data"]
