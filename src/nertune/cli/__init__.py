"""The `nertune` command: one module per command family, each registering itself on `cli.app.app`."""

from nertune.cli import train  # noqa: F401, I001  (registers the commands, in the order --help lists them)
from nertune.cli import data, evaluate, export, predict, serve  # noqa: F401, E402
from nertune.cli.app import app, main

__all__ = ["app", "main"]
