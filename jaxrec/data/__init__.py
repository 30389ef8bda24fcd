"""Data: loading splits into memory (sources) and batching/preprocessing on the device (pipeline)."""

from jaxrec.data.sources import SAMPLE_ROOT, load_data
from jaxrec.data.types import ArrayDataset, DataError, DataSplits

__all__ = ["ArrayDataset", "DataError", "DataSplits", "SAMPLE_ROOT", "load_data"]
