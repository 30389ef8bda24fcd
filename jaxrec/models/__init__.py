"""Model zoo: `create_model(config, num_classes)` maps a config's `model` name to a Flax module."""

from __future__ import annotations

import flax.linen as nn

from jaxrec.config import Config
from jaxrec.errors import InputError
from jaxrec.models.cnn import ArticleCNN, count_params

MODELS = ("cnn",)


def create_model(config: Config, num_classes: int) -> nn.Module:
    """Builds the module named by `config.model`."""
    if config.model == "cnn":
        return ArticleCNN(num_classes=num_classes, conv_features=tuple(config.conv_features),
                          dense_features=config.dense_features)
    raise InputError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")


__all__ = ["ArticleCNN", "MODELS", "count_params", "create_model"]
