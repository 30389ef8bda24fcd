"""Evaluation: the whole-split Evaluator (evaluator), the scores derived from its sums (metrics), and
classifying new images with a trained run (predict)."""
