"""Models: the recipes `--model` names (loaded by jaxrec.models.recipes) and the CPU kernels they share
(docs/recipes.md; docs/design.md, "Recipes"). Imports nothing heavy: a recipe's module loads when its model is
built or its defaults read."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from jaxrec.models.recipes import config_for, load, recipe_knobs

# The devices' named axis: train and eval steps average over it; a network's BatchNorm takes it as its axis_name.
AXIS = "batch"


def create_model(config: Any, num_classes: int, *, for_eval: bool = False) -> Any:
    """The module a checked `config.model` names, with the platform's kernels. Configs that differ only in seeds
    get the same module, so a study's seeds share one compiled train step. `for_eval`: the module evaluation and
    prediction run (the same parameters and function; only forward-pass kernels may differ)."""
    from jaxrec.models import kernels  # noqa: PLC0415 - imports JAX

    chosen = kernels.choose(config)
    if for_eval:
        chosen = dataclasses.replace(chosen, image_conv=chosen.eval_image_conv)
    return _model(config.without_seeds(), num_classes, chosen)


@functools.lru_cache(maxsize=32)
def _model(config: Any, num_classes: int, chosen: Any) -> Any:
    return load(config.model).module.build(config, num_classes, chosen)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter tree."""
    import jax  # noqa: PLC0415

    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


__all__ = ["AXIS", "config_for", "count_params", "create_model", "load", "recipe_knobs"]
