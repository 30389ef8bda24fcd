"""Quiets the storage layer's noise after a failed checkpoint read or write.

When TensorStore fails, Orbax's asyncio loop is closed while TensorStore's threads still complete its futures;
each prints a traceback through sys.unraisablehook ("Event loop is closed") or asyncio's logger ("exception was
never retrieved"): hundreds of lines after jaxrec's own one-line report. Only those are dropped; every other
unraisable exception and log record, and sys.stderr itself, are left alone.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from pathlib import Path
from typing import Any

STORAGE_LIBRARIES = ("orbax", "tensorstore")
# TensorStore's errors: a ValueError whose text starts with a status code. Raised in C++, such an error has no
# Python frame but asyncio's, which awaited it.
STATUS = re.compile(r"^(CANCELLED|UNKNOWN|INVALID_ARGUMENT|NOT_FOUND|ALREADY_EXISTS|PERMISSION_DENIED|"
                    r"RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|UNIMPLEMENTED|INTERNAL|"
                    r"UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNAUTHENTICATED): ")


def _from_storage(exc: BaseException | None, obj: Any = None) -> bool:
    """Whether an exception (or the coroutine it was raised in) comes from the storage layer."""
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    code = getattr(obj, "cr_code", None)
    if code is not None and any(lib in code.co_filename for lib in STORAGE_LIBRARIES):
        return True
    frames = traceback.extract_tb(exc.__traceback__) if exc is not None else []
    if any(lib in frame.filename for frame in frames for lib in STORAGE_LIBRARIES):
        return True
    return (isinstance(exc, ValueError) and bool(STATUS.match(str(exc))) and bool(frames)
            and all("asyncio" in Path(frame.filename).parts for frame in frames))


class _UnraisableFilter:
    """sys.unraisablehook: the storage layer's unraisable exceptions are dropped, the rest passed on."""

    def __init__(self, previous: Any):
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if not _from_storage(unraisable.exc_value, unraisable.object):
            self.previous(unraisable)


def _asyncio_filter(record: logging.LogRecord) -> bool:
    """A log filter dropping asyncio's "exception was never retrieved" for the storage layer's futures."""
    exc = record.exc_info[1] if record.exc_info else None
    return not ("never retrieved" in record.getMessage() and _from_storage(exc))


def install() -> None:
    """Installs both filters, once per process (jaxrec.run.checkpoints does on first use)."""
    if not isinstance(sys.unraisablehook, _UnraisableFilter):
        sys.unraisablehook = _UnraisableFilter(sys.unraisablehook)
    logging.getLogger("asyncio").addFilter(_asyncio_filter)  # addFilter skips a filter it already holds
