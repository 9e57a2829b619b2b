"""Data: CoNLL column files in, sentences with IOB2 tags out."""
