"""CLI command(s) for evaluate: registered on nertune.cli.app at import."""
