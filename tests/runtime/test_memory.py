"""The memory check's estimates against what XLA allocates for the real training and evaluation calls
(the compiled programs' buffer sizes: arguments, outputs and temporaries)."""

import jax
import jax.numpy as jnp
import pytest

from helpers import PRE
from jaxrec.config import Config
from jaxrec.core.tta import with_tta
from jaxrec.models import create_model
from jaxrec.runtime import memory
from jaxrec.core.parallel import make_eval_fn, make_program
from jaxrec.core.state import create_train_state

SHAPE = (192, 192, 3)
BATCH = 4


def compiled_peak(lowered) -> int:
    """Bytes the compiled program holds at once: its arguments, outputs and temporaries (less what an
    output reuses of a donated argument)."""
    stats = lowered.compile().memory_analysis()
    return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
            - stats.alias_size_in_bytes)


def on_one_device(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), tree)


def images(*lead: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((*lead, *SHAPE), jnp.uint8)


# Narrow networks on large images, where the first convolution's patch matrix (27 floats a pixel)
# outweighs every layer's output: the estimate without it was 3-5x below the peak.
@pytest.mark.parametrize("widths", [(2,), (4, 8), (8, 16)])
def test_the_training_estimate_covers_the_compiled_step_s_peak(widths):
    config = Config(conv_features=widths, dense_features=8)
    model = create_model(config, 10)
    state = jax.eval_shape(lambda: create_train_state(config.optimisation, model, SHAPE, jax.random.key(0),
                                                      steps_per_epoch=10))
    labels = jax.ShapeDtypeStruct((1, 1, BATCH), jnp.int32)
    program = make_program(PRE, jax.devices()[:1])
    peak = compiled_peak(program.fn.lower(on_one_device(state), images(1, 1, BATCH), labels, labels,
                                          jax.random.key(0)))
    estimate = memory.training_bytes(model, SHAPE, BATCH)
    assert peak <= estimate <= 3 * peak, (peak, estimate)


@pytest.mark.parametrize("views", [1, 2])
def test_the_evaluation_estimate_covers_the_compiled_eval_call_s_peak(views):
    config = Config(conv_features=(2,), dense_features=8)
    model, evaluated = create_model(config, 10), create_model(config, 10, for_eval=True)
    state = jax.eval_shape(lambda: create_train_state(config.optimisation, model, SHAPE, jax.random.key(0),
                                                      steps_per_epoch=10))
    apply = with_tta(evaluated.apply, views - 1)  # level 1: the image and its mirror
    labels = indices = jax.ShapeDtypeStruct((1, BATCH * 4), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, BATCH * 4), jnp.float32)
    fn = make_eval_fn(apply, PRE, jax.devices()[:1])  # as a streamed batch comes: the batch, gathered in order
    peak = compiled_peak(fn.lower(on_one_device(state.eval_variables), images(1, BATCH * 4), labels, indices, mask))
    estimate = memory.evaluation_bytes(evaluated, SHAPE, BATCH * 4, views)
    assert peak <= estimate <= 3 * peak, (peak, estimate)
