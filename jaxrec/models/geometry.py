"""The smallest image each model takes, from its layers' geometry. Imports nothing heavy, so the
settings check can refuse an image size before JAX starts or any data is loaded.

Only airbench94 has a floor: its max-pools drop the pixels that do not fill a window (PyTorch's
floor mode), so too small an image leaves no features for the classifier. The article's CNN pools
in ceil mode and the ResNets average globally, so any image leaves them at least one pixel.
"""

from __future__ import annotations

from typing import Any

AIRBENCH_WHITEN_SIZE = 2  # the whitening convolution's kernel, without padding: one pixel fewer per side
AIRBENCH_GROUP_POOL = 2   # each conv group's max-pool, floor mode
AIRBENCH_FINAL_POOL = 3   # the max-pool before the classifier, floor mode


def airbench_smallest_image(groups: int) -> int:
    """The smallest side airbench94 takes with `groups` conv groups: the final pool needs a full
    window, each group's pool halves the side before it (so doubles what it needs), and the
    whitening convolution takes one pixel more."""
    return AIRBENCH_FINAL_POOL * AIRBENCH_GROUP_POOL ** groups + AIRBENCH_WHITEN_SIZE - 1


def smallest_image_size(config: Any) -> int:
    """The smallest image side (height and width) the model of `config` takes."""
    if config.model == "airbench94":
        return airbench_smallest_image(len(config.conv_features))
    return 1


def image_size_problem(config: Any, height: int, width: int, where: str) -> str | None:
    """The line that refuses `height` x `width` images (`where`: the flag or data set they come from)
    for config's model, or None when the model takes them."""
    smallest = smallest_image_size(config)
    if min(height, width) >= smallest:
        return None
    groups = len(config.conv_features)
    fewer = (f", or fewer conv groups (--conv_features with {groups - 1} widths takes "
             f"{airbench_smallest_image(groups - 1)}x{airbench_smallest_image(groups - 1)})" if groups > 1 else "")
    return (f"{where}: {height}x{width} images are too small for --model {config.model} with {groups} conv groups, "
            f"whose pools would leave no features; it takes at least {smallest}x{smallest} pixels: pass "
            f"--image_size {smallest} or more{fewer}")


__all__ = ["AIRBENCH_FINAL_POOL", "AIRBENCH_GROUP_POOL", "AIRBENCH_WHITEN_SIZE", "airbench_smallest_image",
           "image_size_problem", "smallest_image_size"]
