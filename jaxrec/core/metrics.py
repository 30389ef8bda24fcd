"""Classification metrics derived on the host from the eval step's device-side sums, a confusion matrix and a rank
histogram (docs/design.md, "Whole-set evaluation from device-side sums")."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix [true, predicted]; 0, not NaN, for a
    class with no predictions (precision) or no examples (recall)."""
    confusion = np.asarray(confusion, np.float64)
    true_pos = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = _safe_divide(true_pos, predicted)
    recall = _safe_divide(true_pos, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro/weighted precision, recall and F1 from a confusion matrix [true, predicted]."""
    scores = per_class(confusion)
    support = scores["support"]
    total = support.sum()
    result = {"accuracy": float(np.trace(np.asarray(confusion, np.float64)) / total) if total else 0.0}
    for name in ("precision", "recall", "f1"):
        result[f"macro_{name}"] = float(scores[name].mean())
        result[f"weighted_{name}"] = float((scores[name] * support).sum() / total) if total else 0.0
    return result


def top_k_accuracy(rank_counts: np.ndarray, k: int) -> float:
    """Fraction of examples whose true label is among the k highest logits; rank_counts[r] counts the examples
    whose true label ranked r (0: the argmax). A k above the number of classes counts them all."""
    rank_counts = np.asarray(rank_counts, np.float64)
    total = rank_counts.sum()
    return float(rank_counts[:max(k, 1)].sum() / total) if total else 0.0


def summarize_eval(sums: dict, top_k: int = 5) -> dict[str, Any]:
    """Summed eval outputs (loss_sum, count, confusion, label_rank) -> loss, accuracy, macro/weighted scores and
    top-k accuracy, with the confusion matrix and rank counts as int arrays for `report`."""
    count = float(sums["count"])
    confusion = np.rint(np.asarray(sums["confusion"])).astype(np.int64)
    ranks = np.rint(np.asarray(sums["label_rank"])).astype(np.int64)
    k = min(top_k, len(ranks))
    return {"loss": float(sums["loss_sum"]) / count, "count": int(count), **from_confusion(confusion),
            "top_k": k, "top_k_accuracy": top_k_accuracy(ranks, k), "confusion": confusion, "label_rank": ranks}


def report(result: dict[str, Any], class_names: Sequence[str], top_k: int | None = None,
           plain: dict[str, Any] | None = None, level: int = 0) -> dict[str, Any]:
    """A JSON-ready report of a `summarize_eval` result: summary scores, a per-class table and the confusion
    matrix; top_k, if given, overrides the k it was summarised with. With test-time augmentation `level` (not 0)
    and `plain`, the summarize_eval output without it, that one's main scores go under 'without_tta'."""
    confusion = np.asarray(result["confusion"])
    if len(class_names) != len(confusion):
        raise ValueError(f"{len(class_names)} class names for a {len(confusion)}-class confusion matrix")
    k = min(top_k, len(confusion)) if top_k else result["top_k"]
    scores = per_class(confusion)
    rows = [{"class": name, "precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
             "f1": float(scores["f1"][i]), "support": int(scores["support"][i])}
            for i, name in enumerate(class_names)]
    summary = {key: value for key, value in result.items() if not isinstance(value, np.ndarray)}
    summary.update(top_k=k, top_k_accuracy=top_k_accuracy(result["label_rank"], k))
    absent = [name for name, support in zip(class_names, scores["support"]) if support == 0]
    # Named: a reader of the scores must know that they count 0 in the macro averages (as in scikit-learn).
    num = len(class_names)
    note = {"note": f"{len(absent)} of {num} classes have no examples in the evaluated split and count 0 in the macro "
                    f"precision, recall and F1 (a perfect classifier's macro F1 is {1 - len(absent) / num:.3f}): "
                    f"{', '.join(absent)}"} if absent else {}
    full = {**summary, "classes_without_examples": absent, **note, "per_class": rows,
            "class_names": list(class_names), "confusion": confusion.tolist()}
    if not level or plain is None:
        return full
    without = {"accuracy": plain["accuracy"], "loss": plain["loss"], "macro_f1": plain["macro_f1"],
               "top_k_accuracy": top_k_accuracy(plain["label_rank"], k)}
    return {**full, "tta": level, "without_tta": without}
