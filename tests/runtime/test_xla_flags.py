"""XLA:CPU's flags as jaxrec sets them: convolutions on XLA's own kernels, matmuls on YNNPACK, on every
supported jaxlib. The routing itself is checked in the compiled program, not by a timing."""

import jax
import jax.numpy as jnp

from jaxrec.config import Config
from jaxrec.runtime import xla_flags


def compiled_text(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_every_supported_jaxlib_gets_the_flag():
    assert xla_flags.jaxlib_version() in xla_flags.CPU_FLAGS
    assert xla_flags.YNN_FLAG in xla_flags.wanted(Config(), environ={})
    assert xla_flags.wanted(Config(cpu_ynn=False), environ={}) is None
    assert xla_flags.wanted(Config(), environ={"XLA_FLAGS": f"{xla_flags.YNN_FLAG}=reduce"}) is None  # the user's wins


def test_with_jaxrecs_flags_no_convolution_goes_to_ynnpack():
    """conftest set the flags as a run does (set_cpu_flags) before JAX started. 64 channels: float32
    convolutions of more than 16 go to YNNPACK under XLA's default list."""
    x, k = jnp.ones((4, 8, 8, 64)), jnp.ones((3, 3, 64, 64))

    def loss(x, k):
        return jnp.sum(conv(x, k) ** 2)

    forward_and_gradients = compiled_text(jax.value_and_grad(loss, argnums=(0, 1)), x, k)
    assert forward_and_gradients.count("convolution(") == 3  # forward, input gradient, kernel gradient
    assert "__ynn_fusion" not in forward_and_gradients
    # The flag was read and YNNPACK is on: a matmul still goes to it.
    assert "__ynn_fusion" in compiled_text(jnp.matmul, jnp.ones((64, 64)), jnp.ones((64, 64)))
