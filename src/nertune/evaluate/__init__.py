"""Evaluate: conlleval-compatible scores, model predictions over whole sentences."""
