"""Models: one module per network, and the registry that maps a config's `--model` name to it.

A model is a Flax linen module whose `__call__(x, train=False)` maps float images [batch, H, W, C]
to logits [batch, classes], plus a `build(config, num_classes, kernels)` that makes it from a
config. Adding one is a module and a line of REGISTRY (docs/development.md). Layers with state, such
as BatchNorm, keep it in their own collections (`batch_stats`); the train state, the train step,
checkpoints, evaluation and prediction carry every collection the model has. The CPU kernels the
article CNN can swap in are in `kernels` and `conv`/`pooling`.

This module imports nothing heavy (the config reads REGISTRY before JAX starts); the networks load
when a model is built.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

# The devices' named axis: the pmapped train and eval steps average their gradients and metrics over it,
# and a model's BatchNorm layers their statistics (so a network takes it as its normalisation axis).
AXIS = "batch"
# --model name -> "module:builder"; the builder takes (config, num_classes, kernels) and returns the module.
REGISTRY = {
    "cnn": "jaxrec.models.cnn:build",
    "rnn": "jaxrec.models.rnn:build",
    "resnet18": "jaxrec.models.resnet:build",
    "resnet20": "jaxrec.models.resnet:build",
    "airbench94": "jaxrec.models.airbench:build",
}
MODELS = tuple(REGISTRY)
# Names this package exports from the modules that hold them, loaded on first use.
_LAZY = {"ArticleCNN": "jaxrec.models.cnn", "CELLS": "jaxrec.models.rnn", "RNN": "jaxrec.models.rnn",
         "RowRNNClassifier": "jaxrec.models.rnn"}


def create_model(config: Any, num_classes: int, *, for_eval: bool = False) -> Any:
    """Builds the module named by `config.model` (a checked Config: see jaxrec.config.check).
    Configs that differ only in seeds get the same module, so the train states of a study's seeds
    share their structure (apply_fn) and one compiled train step. The kernels are the platform's
    (jaxrec.models.kernels.choose); `for_eval`: the module evaluation and prediction run (the same
    parameters and function; only kernels chosen for the forward pass alone may differ)."""
    from jaxrec.models import kernels  # noqa: PLC0415 - imports JAX

    chosen = kernels.choose(config)
    if for_eval:
        chosen = dataclasses.replace(chosen, image_conv=chosen.eval_image_conv)
    return _model(config.without_seeds(), num_classes, chosen)


@functools.lru_cache(maxsize=32)
def _model(config: Any, num_classes: int, chosen: Any) -> Any:
    if config.model not in REGISTRY:
        raise ValueError(f"no model named {config.model!r} in jaxrec.models.REGISTRY ({', '.join(MODELS)})")
    module, _, builder = REGISTRY[config.model].partition(":")
    return getattr(importlib.import_module(module), builder)(config, num_classes, chosen)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter tree."""
    import jax  # noqa: PLC0415

    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxrec.models' has no attribute {name!r}")


__all__ = ["AXIS", "ArticleCNN", "CELLS", "MODELS", "REGISTRY", "RNN", "RowRNNClassifier", "count_params", "create_model"]
