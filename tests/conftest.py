"""Test setup: 8 fake CPU devices and a compilation cache (set before JAX starts, inherited by the
scripts the tests run), and the small config most loop tests use."""

import atexit
import logging
import os
import shutil
import tempfile

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):  # pytest-xdist's workers inherit it
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
# XLA:CPU's flags as a run sets them (YNNPACK), for this process and the scripts it starts alike.
from jaxrec.config import Config  # noqa: E402 - no JAX
from jaxrec.runtime.xla_flags import set_cpu_flags  # noqa: E402

set_cpu_flags(Config())
# The tests check what programs compute, not how fast they run, and they compile several hundred:
# LLVM's optimisation passes are most of XLA:CPU's compile time (docs/development.md has the figures).
# XLA's own passes, its fusions and YNNPACK's routing stay as a run has them.
if "--xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests train the same small programs again (a straight run and a resumed one, 1 and 8 devices):
# JAX's persistent compilation cache compiles each program once. It changes no result: a cached
# executable is the same executable. One folder serves the session, its pytest-xdist workers and the
# scripts they start: JAXREC_TEST_XLA_CACHE if set (CI's), else a fresh one removed at the end.
_CACHE = os.environ.get("JAXREC_TEST_XLA_CACHE")
if not _CACHE:
    _CACHE = os.environ["JAXREC_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="jaxrec-tests-xla-cache-")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.makedirs(_CACHE, exist_ok=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402

from helpers import SMALL  # noqa: E402


@pytest.fixture(autouse=True)
def logging_as_it_was():
    """Puts the root logger's handlers back after each test: the command line's set-up
    (logging.basicConfig) binds them to the stderr of the test that ran it, which pytest closes; a
    later test's log lines would then end in "--- Logging error ---" tracebacks."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


@pytest.fixture
def small_config() -> Config:
    """A quick run on the shipped sample: one epoch, small model, one device, no progress bar."""
    return Config(dataset="cifar10_sample", epochs=1, batch_size=32, num_devices=1, progress=False,
                  steps_per_call=4, **SMALL)


def pytest_report_header(config):
    return f"jax {jax.__version__}, {jax.local_device_count()} local devices ({jax.devices()[0].platform})"
