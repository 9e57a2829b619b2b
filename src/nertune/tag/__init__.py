"""Tag: a trained model applied to raw text."""
