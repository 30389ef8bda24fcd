"""Set-up at the boundary, once (`prepare`): check the config, set XLA:CPU's flags, split the CPU into devices, join
processes. A config it has prepared passes through untouched (docs/design.md, "Set-up once")."""

from __future__ import annotations

import logging
from typing import Sequence

from jaxrec.config import Config, refuse, settings_problems
from jaxrec.models.recipes import load, recipe_problems

# Configs this process has prepared, each with the batch sizes its devices were split for.
_prepared: set[tuple[Config, tuple[str, ...] | None, tuple[int, ...]]] = set()


def prepare(config: Config, only: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None) -> Config:
    """`config`, checked (the fields in `only`, default all), with the CPU split into devices for `batch_sizes`
    (default: its training batch) and the run's processes joined, both before JAX's backend starts. Idempotent."""
    sizes = (config.batch_size,) if batch_sizes is None else tuple(batch_sizes)
    key = (config, None if only is None else tuple(only), sizes)
    if key in _prepared:
        return config
    # The recipe --model names, if it is checked and names one (loading it imports JAX, before the backend starts).
    recipe = (only is None or "model" in only) and not settings_problems(config, ["model"])
    refuse(settings_problems(config, only) + (recipe_problems(config) if recipe else []))  # every problem, at once
    warn_if_recipe_left_out(config)
    # Imported here: they import JAX, and a refused setting must not wait for it.
    from jaxrec.runtime import cpu_devices, distributed, xla_flags  # noqa: PLC0415

    xla_flags.set_cpu_flags(config)
    cpu_devices.split_host(config, sizes)
    distributed.start(config)
    warn_if_long_unrolled_loop(config)
    _prepared.add(key)
    return config


LONG_UNROLLED_LOOP = 64  # steps per call past which compiling the unrolled loop takes minutes


def warn_if_long_unrolled_loop(config: Config) -> None:
    """A warning, before compiling, when a device call unrolls many steps (XLA:CPU's loop: each step is
    a copy of the train step in the program, compiled one after another)."""
    from jaxrec.models import kernels  # noqa: PLC0415 - after the backend may start

    if config.steps_per_call > LONG_UNROLLED_LOOP and kernels.choose(config).steps_loop == "unrolled":
        logging.getLogger("jaxrec").warning(
            "--steps_per_call %d with the unrolled loop: the program holds %d copies of the train step and XLA "
            "compiles each, so compiling takes minutes; --steps_per_call 10 trains about as fast on a CPU, and "
            "--steps_loop rolled compiles one step (but runs convolutions slower on XLA:CPU)",
            config.steps_per_call, config.steps_per_call)


def warn_if_recipe_left_out(config: Config) -> None:
    """A warning when a recipe with defaults of its own (airbench94's) runs with none of them, as
    `Config(model="airbench94")` does: the network with the article CNN's optimizer settings."""
    recipe = load(config.model).defaults
    plain = Config()
    if recipe and all(getattr(config, k) == getattr(plain, k) for k in recipe if k != "eval_batch_size"):
        logging.getLogger("jaxrec").warning(
            "--model %s runs with none of its recipe (batch, optimizer, schedule, augmentation, TTA are the article "
            "CNN's); jaxrec.models.config_for(%r) gives the recipe, as `jaxrec train --model %s` does", config.model,
            config.model, config.model)
