"""Training: speed against the Hugging Face Trainer, precision, padding and packing, recipe and seed runs."""
