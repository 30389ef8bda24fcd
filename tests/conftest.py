"""Test setup: 8 fake CPU devices (set before jax is imported), and small shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxrec.config import Config  # noqa: E402

# A narrow version of the article's CNN: same structure, a fraction of the compute, for loop tests.
SMALL = dict(conv_features=(8, 16), dense_features=32)


@pytest.fixture
def small_config() -> Config:
    """A quick run on the shipped sample: one epoch, small model, one device, no progress bar."""
    return Config(dataset="cifar10_sample", epochs=1, batch_size=32, num_devices=1, progress=False,
                  steps_per_call=4, **SMALL)


def pytest_report_header(config):
    return f"jax {jax.__version__}, {jax.local_device_count()} local devices ({jax.devices()[0].platform})"
