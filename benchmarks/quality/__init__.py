"""Accuracy and agreement: scoring, word splitting, constrained decoding, early F1, the adversarial pass."""
