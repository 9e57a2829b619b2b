"""CLI command(s) for export: registered on nertune.cli.app at import."""
