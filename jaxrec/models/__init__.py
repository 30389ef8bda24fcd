"""Model zoo: `create_model(config, num_classes)` maps a config's `model` name to a Flax module."""

from __future__ import annotations

import flax.linen as nn

from jaxrec.config import Config
from jaxrec.errors import InputError
from jaxrec.models.cnn import ArticleCNN, count_params
from jaxrec.models.rnn import CELLS, RNN, RowRNNClassifier

MODELS = ("cnn", "rnn")


def check_model_config(config: Config) -> None:
    """Rejects an unknown model name or settings its model cannot use, naming the fix."""
    if config.model not in MODELS:
        raise InputError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")
    problems = []
    if config.model == "rnn":
        if config.rnn_cell not in CELLS:
            problems.append(f"rnn_cell must be one of {', '.join(CELLS)} (got {config.rnn_cell!r})")
        if config.rnn_hidden < 1:
            problems.append(f"rnn_hidden must be >= 1 (got {config.rnn_hidden})")
        if config.rnn_layers < 1:
            problems.append(f"rnn_layers must be >= 1 (got {config.rnn_layers})")
    if problems:
        raise InputError("invalid model config: " + "; ".join(problems))


def create_model(config: Config, num_classes: int) -> nn.Module:
    """Builds the module named by `config.model` (after `check_model_config`)."""
    check_model_config(config)
    if config.model == "rnn":
        return RowRNNClassifier(num_classes=num_classes, cell=config.rnn_cell, hidden=config.rnn_hidden,
                                num_layers=config.rnn_layers, bidirectional=config.rnn_bidirectional)
    return ArticleCNN(num_classes=num_classes, conv_features=tuple(config.conv_features),
                      dense_features=config.dense_features)


__all__ = ["ArticleCNN", "MODELS", "RNN", "RowRNNClassifier", "check_model_config", "count_params",
           "create_model"]
