"""The optimizer: optax SGD with momentum, weight decay, warm-up and schedule, and parameter groups (parameters
trained for part of the run, BatchNorm biases' own learning rate: docs/recipes.md, "State, BatchNorm and the hooks")."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import jax
import optax

from jaxrec.config import Optimisation
from jaxrec.errors import InputError
from jaxrec.models.norm import is_norm_bias, path_names


def total_steps(settings: Optimisation, steps_per_epoch: int) -> int:
    """Training steps of the whole run: ceil(epochs x steps_per_epoch), at least 1."""
    return max(1, math.ceil(round(settings.epochs * steps_per_epoch, 6)))


def uses_total_steps(settings: Optimisation) -> bool:
    """Whether the run's numbers depend on its total steps (so on --epochs): a decaying schedule, a
    warm-up given as a fraction of the run, or lookahead's (step / total)^3."""
    return settings.lr_schedule != "constant" or bool(settings.warmup_fraction) or settings.lookahead


def check_lookahead(settings: Optimisation, steps_per_epoch: int) -> None:
    """Refuses (InputError) a lookahead run whose --epochs are shorter than its averaging period: the average would
    never sync, and the network, set to it at the end of --epochs (not of --max_steps), would be the initial one."""
    steps = total_steps(settings, steps_per_epoch)
    if not settings.lookahead or steps >= settings.lookahead_every:
        return
    epochs = math.ceil(settings.lookahead_every / steps_per_epoch * 1000) / 1000  # rounded up: at least that many steps
    raise InputError(f"--epochs {settings.epochs:g} trains {steps} steps ({steps_per_epoch} per epoch), fewer than "
                     f"--lookahead_every {settings.lookahead_every}: the lookahead average would never be updated and "
                     f"the run would end on its initial network; pass --epochs {epochs:g} or more, --lookahead_every "
                     f"{steps} or less, or --lookahead false")


def step_hyperparameters(settings: Optimisation) -> tuple[float, float]:
    """The learning rate and the decay coefficient (added to the gradient) SGD applies: as given, or with
    --decoupled airbench's, both per 1,024 examples with the momentum's gain divided out, so the decay per step
    (learning rate x coefficient) is weight_decay x batch_size / (1024 x (1 + 1/(1 - momentum)))."""
    if not settings.decoupled:
        return settings.learning_rate, settings.weight_decay
    per_step = 1024 * (1 + 1 / (1 - settings.momentum))
    return settings.learning_rate / per_step, settings.weight_decay * settings.batch_size / settings.learning_rate


def learning_rate_schedule(settings: Optimisation, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the step, from the schedule and warm-up settings."""
    total = total_steps(settings, steps_per_epoch)
    if settings.warmup_fraction:
        warmup = int(total * settings.warmup_fraction)
    else:
        warmup = int(round(settings.warmup_epochs * steps_per_epoch))
    peak = step_hyperparameters(settings)[0]
    if settings.lr_schedule == "constant":
        main = optax.constant_schedule(peak)
    elif settings.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps=max(1, total - warmup))
    elif settings.lr_schedule == "step":
        main = optax.piecewise_constant_schedule(
            peak, {int(0.5 * total) - warmup: 0.1, int(0.75 * total) - warmup: 0.1})
    elif settings.lr_schedule == "linear":
        main = optax.linear_schedule(peak, peak * settings.final_lr_fraction, max(1, total - warmup))
    else:
        raise ValueError(f"unknown lr_schedule {settings.lr_schedule!r} (unchecked settings: see jaxrec.config.check)")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(peak * settings.warmup_start, peak, warmup), main], [warmup])


def create_optimizer(settings: Optimisation, steps_per_epoch: int,
                     partly_trained: Mapping[str, float] | None = None) -> optax.GradientTransformation:
    """SGD with momentum and coupled L2 weight decay (added to the gradient, as torch.optim.SGD). partly_trained: the
    epochs (0: frozen) of the parameters trained for part of the run, by path ('module/name'). Equal settings (a
    study's seeds) share one object (part of the train state's structure), so the seeds reuse one compiled step."""
    return _optimizer(settings, steps_per_epoch, tuple(sorted((partly_trained or {}).items())))


def _sgd(settings: Optimisation, schedule: optax.Schedule, decay: float) -> optax.GradientTransformation:
    sgd = optax.sgd(schedule, momentum=settings.momentum or None, nesterov=settings.nesterov)
    return optax.chain(optax.add_decayed_weights(decay), sgd) if decay else sgd


def _until(schedule: optax.Schedule, steps: int) -> Callable[[Any], Any]:
    """`schedule` for the first `steps` steps, 0 after (the group's momentum is then never used again)."""
    return lambda step: schedule(step) * (step < steps)


@functools.lru_cache(maxsize=32)
def _optimizer(settings: Optimisation, steps_per_epoch: int,
               partly_trained: tuple[tuple[str, float], ...]) -> optax.GradientTransformation:
    schedule, decay = learning_rate_schedule(settings, steps_per_epoch), step_hyperparameters(settings)[1]
    plain = _sgd(settings, schedule, decay)
    if not partly_trained and settings.norm_bias_lr_scale == 1:
        return plain  # one group: plain SGD's own state and arithmetic, no multi_transform
    scale = settings.norm_bias_lr_scale
    groups = {
        "plain": plain,
        "frozen": optax.set_to_zero(),
        # The same learning rate x decay product as the other parameters.
        "norm_bias": _sgd(settings, lambda step: schedule(step) * scale, decay / scale),
    }
    for path, epochs in partly_trained:
        if epochs:
            groups[group_of(path)] = _sgd(settings, _until(schedule, int(round(epochs * steps_per_epoch))), decay)
    return optax.multi_transform(groups, functools.partial(param_labels, settings=settings,
                                                           partly_trained=dict(partly_trained)))


def group_of(path: str) -> str:
    """The optimizer group of a parameter that trains for some epochs: its path, '/' as '_'."""
    return path.replace("/", "_")


def param_labels(params: Any, settings: Optimisation, partly_trained: Mapping[str, float] | None = None) -> Any:
    """The optimizer group of every parameter (a tree like `params`): 'frozen' (partly_trained for 0 epochs), its own
    (group_of: for some epochs), 'norm_bias' (BatchNorm biases, when their rate is scaled) or 'plain'."""
    partly_trained = partly_trained or {}

    def label(path: tuple[Any, ...], _: Any) -> str:
        names = path_names(path)
        epochs = partly_trained.get("/".join(names))
        if epochs is not None:
            return group_of("/".join(names)) if epochs else "frozen"
        if settings.norm_bias_lr_scale != 1 and is_norm_bias(names):
            return "norm_bias"
        return "plain"

    return jax.tree_util.tree_map_with_path(label, params)
