"""Evaluation metrics against scikit-learn: per-class scores, averages, top-k, confusion matrix,
from the device-side sums of the eval step, on one device and on 8 with padding."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from helpers import PRE, as_split, random_batch, small_state
from jaxrec.run import outputs
from jaxrec.evaluation.evaluator import Evaluator
from jaxrec.core.metrics import from_confusion, per_class, report, summarize_eval
from jaxrec.core.parallel import replicate, select_devices
from jaxrec.core.steps import label_rank


def _sklearn(labels, predicted, num_classes):
    classes = list(range(num_classes))
    per = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    averages = {avg: precision_recall_fscore_support(labels, predicted, labels=classes, average=avg,
                                                     zero_division=0)[:3] for avg in ("macro", "weighted")}
    return per, averages, confusion_matrix(labels, predicted, labels=classes)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_and_averages_equal_sklearn_with_never_predicted_classes(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7
    labels = rng.integers(0, num_classes, 300)
    predicted = rng.choice([0, 1, 2, 4], 300)  # classes 3, 5 and 6 are never predicted
    labels[labels == 6] = 5  # and class 6 never occurs
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    (precision, recall, f1, support), averages, expected_confusion = _sklearn(labels, predicted, num_classes)
    np.testing.assert_array_equal(confusion, expected_confusion)
    scores = per_class(confusion)
    for name, expected in zip(("precision", "recall", "f1", "support"), (precision, recall, f1, support)):
        np.testing.assert_allclose(scores[name], expected, rtol=1e-12, err_msg=name)
    assert not any(np.isnan(v).any() for v in scores.values())
    assert scores["precision"][3] == scores["recall"][6] == scores["f1"][6] == 0
    summary = from_confusion(confusion)
    for average, (p, r, f) in averages.items():
        assert summary[f"{average}_precision"] == pytest.approx(p, rel=1e-12)
        assert summary[f"{average}_recall"] == pytest.approx(r, rel=1e-12)
        assert summary[f"{average}_f1"] == pytest.approx(f, rel=1e-12)
    assert summary["accuracy"] == pytest.approx(np.mean(labels == predicted))


def test_label_rank_matches_argmax_and_lax_top_k_including_ties():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.integers(0, 4, (500, 6)).astype(np.float32))  # many ties
    labels = jnp.asarray(rng.integers(0, 6, 500))
    ranks = label_rank(logits, labels)
    np.testing.assert_array_equal(ranks == 0, jnp.argmax(logits, -1) == labels)
    for k in (1, 2, 3, 6):
        in_top_k = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
        np.testing.assert_array_equal(ranks < k, in_top_k, err_msg=f"k={k}")


@pytest.mark.parametrize("num_examples,global_batch", [(203, 48), pytest.param(13, 64, marks=pytest.mark.slow)])
def test_eval_on_8_devices_with_padding_equals_sklearn(num_examples, global_batch):
    num_classes = 10
    state = small_state(num_classes=num_classes)
    data = random_batch(num_examples, seed=11, num_classes=num_classes)
    images, labels = np.asarray(data["image"]), np.asarray(data["label"])
    devices = select_devices(8)
    result = Evaluator(state.apply_fn, as_split(images, labels), PRE, devices, global_batch)(replicate(state.variables, devices))
    # Reference: logits of the whole set on the host, scored by scikit-learn.
    logits = np.asarray(state.apply_fn({"params": state.params}, PRE.eval(data["image"])))
    predicted = logits.argmax(-1)
    (precision, recall, f1, support), averages, expected_confusion = _sklearn(labels, predicted, num_classes)
    np.testing.assert_array_equal(result["confusion"], expected_confusion)
    assert result["count"] == num_examples
    full = report(result, [f"c{i}" for i in range(num_classes)], top_k=3)
    for row, p, r, f, s in zip(full["per_class"], precision, recall, f1, support):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, s), rel=1e-9)
    assert full["macro_f1"] == pytest.approx(averages["macro"][2], rel=1e-9)
    assert full["weighted_f1"] == pytest.approx(averages["weighted"][2], rel=1e-9)
    assert full["top_k"] == 3
    assert full["top_k_accuracy"] == pytest.approx(
        top_k_accuracy_score(labels, logits, k=3, labels=list(range(num_classes))))
    assert result["top_k"] == 5 and result["top_k_accuracy"] == pytest.approx(
        top_k_accuracy_score(labels, logits, k=5, labels=list(range(num_classes))))
    # k beyond the class count is clipped: every label is in the top 10 of 10.
    assert report(result, [f"c{i}" for i in range(num_classes)], top_k=50)["top_k_accuracy"] == 1.0


def test_eval_outputs_are_written_with_class_names(tmp_path):
    rng = np.random.default_rng(2)
    labels, predicted = rng.integers(0, 3, 50), rng.integers(0, 2, 50)
    confusion = np.zeros((3, 3)); np.add.at(confusion, (labels, predicted), 1)  # noqa: E702
    ranks = np.bincount(np.where(labels == predicted, 0, 1), minlength=3)
    sums = {"loss_sum": 12.5, "count": 50.0, "confusion": confusion, "label_rank": ranks}
    full = report(summarize_eval(sums), ["ann", "bob", "cyd"])
    paths = outputs.write_eval(tmp_path, full, title="demo")
    saved = json.loads(paths[0].read_text())
    assert saved["class_names"] == ["ann", "bob", "cyd"] and saved["confusion"] == confusion.astype(int).tolist()
    assert saved["per_class"][2]["precision"] == 0 and saved["loss"] == 0.25 and saved["top_k"] == 3
    table = paths[1].read_text()
    assert "| cyd | 0.0000 |" in table and "macro average" in table and "weighted average" in table
    assert paths[2].name == "confusion.png" and paths[2].read_bytes()[:4] == b"\x89PNG"


def test_classes_absent_from_the_split_are_named_in_the_report_and_its_markdown():
    """A perfect classifier on a split without class 'c' scores a macro F1 of 2/3 (the class counts 0,
    as in scikit-learn): the report says so, in eval.json's fields and in eval.md."""
    def perfect(confusion):
        return report({"loss": 0.1, "count": int(confusion.sum()), **from_confusion(confusion), "top_k": 1,
                       "top_k_accuracy": 1.0, "confusion": confusion, "label_rank": np.array([confusion.sum(), 0, 0])},
                      ["a", "b", "c"])

    result = perfect(np.array([[5, 0, 0], [0, 4, 0], [0, 0, 0]]))
    assert result["macro_f1"] == pytest.approx(2 / 3)
    assert result["classes_without_examples"] == ["c"]
    assert "1 of 3 classes have no examples" in result["note"] and result["note"].endswith(": c")
    assert f"Note: {result['note']}" in outputs.eval_markdown(result)
    whole = perfect(np.eye(3, dtype=int))
    assert whole["classes_without_examples"] == [] and "note" not in whole
