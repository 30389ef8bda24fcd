"""Models whose recipe is part of what they are: their defaults, applied by `Config.for_model` and by
`--model` on the command line (flags given with it still win).

airbench94's values are those of KellerJordan/cifar10-airbench, legacy/airbench94.py. Each is an
ordinary Config field, so a study can switch one ingredient off: `--tta 0 --lookahead false
--whiten false`.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "airbench94": dict(
        # Data and augmentation: batch 1024, last partial batch dropped (48 steps per epoch), 9.9 epochs.
        batch_size=1024, epochs=9.9, translate=2, flip="alternating",
        # Network: whitening layer, conv groups of 64/256/256, BatchNorm without scale.
        conv_features=(64, 256, 256), whiten=True, whiten_images=5000, whiten_bias_epochs=3, dirac_init=True,
        logit_scale=1 / 9, norm_momentum=0.6, norm_epsilon=1e-12,
        # Loss and optimiser: summed label-smoothed cross-entropy, Nesterov SGD in decoupled form.
        label_smoothing=0.2, loss_reduction="sum", learning_rate=11.5, momentum=0.85, nesterov=True,
        weight_decay=0.0153, decoupled=True, norm_bias_lr_scale=64.0,
        lr_schedule="linear", warmup_fraction=0.23, warmup_start=0.2, final_lr_fraction=0.07,
        # Weight averaging and evaluation.
        lookahead=True, lookahead_every=5, lookahead_decay=0.95, tta=2,
        # Evaluated in batches the reference uses; evaluation pads the last one.
        eval_batch_size=1000,
    ),
}

__all__ = ["PRESETS"]
