"""The optimizer: optax SGD with momentum, optional weight decay, warm-up and schedule."""

from __future__ import annotations

import functools

import optax

from jaxrec.config import Config


def learning_rate_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the step, from the config's schedule and warm-up."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    peak = config.learning_rate
    if config.lr_schedule == "constant":
        main = optax.constant_schedule(peak)
    elif config.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps=max(1, total - warmup))
    elif config.lr_schedule == "step":
        main = optax.piecewise_constant_schedule(
            peak, {int(0.5 * total) - warmup: 0.1, int(0.75 * total) - warmup: 0.1})
    else:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r} (an unchecked config: see jaxrec.config.check)")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def create_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD with momentum; weight decay is coupled L2 (added to the gradient), like torch.optim.SGD.
    Configs that differ only in seeds get the same object: it is part of the train state's structure,
    so runs of one process (a study's seeds) reuse one compiled train step."""
    return _optimizer(config.without_seeds(), steps_per_epoch)


@functools.lru_cache(maxsize=32)
def _optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    sgd = optax.sgd(learning_rate_schedule(config, steps_per_epoch),
                    momentum=config.momentum or None, nesterov=config.nesterov)
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), sgd)
    return sgd
