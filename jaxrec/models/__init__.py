"""Model zoo: `create_model(config, num_classes)` maps a config's `model` name to a Flax module."""

from __future__ import annotations

import dataclasses
import functools
import typing

import flax.linen as nn
import jax

from jaxrec import kernels
from jaxrec.config import Config, Model
from jaxrec.models.cnn import ArticleCNN
from jaxrec.models.rnn import CELLS, RNN, RowRNNClassifier
from jaxrec.steps import AXIS

MODELS = typing.get_args(Model)


def create_model(config: Config, num_classes: int, *, for_eval: bool = False) -> nn.Module:
    """Builds the module named by `config.model` (a checked config: see jaxrec.config.check).
    Configs that differ only in seeds get the same module, so the train states of a study's seeds
    share their structure (apply_fn) and one compiled train step. The CNN's kernels are the
    platform's (jaxrec.kernels.choose); `for_eval`: the module evaluation and prediction run (the
    same parameters and function; only kernels chosen for the forward pass alone may differ)."""
    chosen = kernels.choose(config)
    if for_eval:
        chosen = dataclasses.replace(chosen, image_conv=chosen.eval_image_conv)
    return _model(config.without_seeds(), num_classes, chosen)


@functools.lru_cache(maxsize=32)
def _model(config: Config, num_classes: int, chosen: kernels.Kernels) -> nn.Module:
    if config.model == "rnn":
        return RowRNNClassifier(num_classes=num_classes, cell=config.rnn_cell, hidden=config.rnn_hidden,
                                num_layers=config.rnn_layers, bidirectional=config.rnn_bidirectional)
    if config.model == "cnn":
        return ArticleCNN(num_classes=num_classes, conv_features=tuple(config.conv_features),
                          dense_features=config.dense_features, image_conv=chosen.image_conv,
                          conv_grad=chosen.conv_grad, pool=chosen.pool, norm=config.norm, norm_axis=AXIS,
                          norm_momentum=config.norm_momentum, norm_epsilon=config.norm_epsilon)
    raise ValueError(f"no model named {config.model!r} in jaxrec.models ({', '.join(MODELS)})")


def count_params(params) -> int:
    """Total number of scalars in a parameter tree."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


__all__ = ["ArticleCNN", "CELLS", "MODELS", "RNN", "RowRNNClassifier", "count_params", "create_model"]
