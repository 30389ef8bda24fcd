"""The optimizer knobs: schedules, warm-up, weight decay, momentum."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec.config import Config
from jaxrec.core.optim import create_optimizer, learning_rate_schedule


def test_schedules():
    steps = 100  # per epoch; 10 epochs
    constant = learning_rate_schedule(Config().optimisation, steps)
    assert float(constant(0)) == float(constant(999)) == pytest.approx(0.01)
    cosine = learning_rate_schedule(Config(lr_schedule="cosine", warmup_epochs=1).optimisation, steps)
    assert float(cosine(0)) == 0.0 and float(cosine(50)) == pytest.approx(0.005)
    assert float(cosine(100)) == pytest.approx(0.01) and float(cosine(1000)) == pytest.approx(0.0, abs=1e-8)
    step = learning_rate_schedule(Config(lr_schedule="step").optimisation, steps)
    assert [float(step(s)) for s in (499, 501, 751)] == pytest.approx([0.01, 0.001, 0.0001])
    with pytest.raises(ValueError, match="unknown lr_schedule 'triangle'"):
        learning_rate_schedule(Config(lr_schedule="triangle").optimisation, steps)


def test_sgd_momentum_and_coupled_weight_decay_match_the_textbook_update():
    params = {"w": jnp.array([1.0, -2.0])}
    grad = {"w": jnp.array([0.5, 0.25])}
    tx = create_optimizer(Config(learning_rate=0.1, momentum=0.9, weight_decay=0.01).optimisation, steps_per_epoch=10)
    state = tx.init(params)
    velocity = np.zeros(2)
    p = np.array([1.0, -2.0])
    for _ in range(3):
        updates, state = tx.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        # torch.optim.SGD: v = momentum * v + (g + wd * p); p -= lr * v
        velocity = 0.9 * velocity + (np.array([0.5, 0.25]) + 0.01 * p)
        p = p - 0.1 * velocity
    np.testing.assert_allclose(params["w"], p, rtol=1e-6)
