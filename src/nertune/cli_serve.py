"""CLI command(s) for serve: registered on nertune.cli.app at import."""
