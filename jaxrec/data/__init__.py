"""The data layer. Nothing is imported until it is used, so tfds_prepare stays free of JAX: `jaxrec prepare` runs
beside a separate TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"SAMPLE_ROOT": "jaxrec.data.sources", "load_data": "jaxrec.data.sources",
         "ArrayDataset": "jaxrec.data.types", "DataError": "jaxrec.data.types", "DataSplits": "jaxrec.data.types"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxrec.data' has no attribute {name!r}")


__all__ = ["ArrayDataset", "DataError", "DataSplits", "SAMPLE_ROOT", "load_data"]
