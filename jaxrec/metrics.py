"""Classification metrics derived on the host from device-side sums (a confusion matrix)."""

from __future__ import annotations

import numpy as np


def from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 from a confusion matrix [true, predicted].

    A class with no predictions (or no examples) has precision (recall) 0, not NaN.
    """
    confusion = np.asarray(confusion, np.float64)
    true_pos = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    total = confusion.sum()
    return {"accuracy": float(true_pos.sum() / total) if total else 0.0,
            "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
            "macro_f1": float(f1.mean())}


def summarize_eval(sums: dict) -> dict[str, float]:
    """Turns summed eval outputs (loss_sum, count, confusion) into loss, accuracy and macro scores."""
    count = float(sums["count"])
    return {"loss": float(sums["loss_sum"]) / count, "count": int(count), **from_confusion(sums["confusion"])}
