"""Evaluation: the whole-split Evaluator (evaluator, its scores from jaxrec.core.metrics), and
classifying new images with a trained run (predict)."""
