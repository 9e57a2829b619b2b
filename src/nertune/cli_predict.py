"""CLI command(s) for predict: registered on nertune.cli.app at import."""
