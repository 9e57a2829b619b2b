"""Model: any Hugging Face encoder with a token-classification head."""
