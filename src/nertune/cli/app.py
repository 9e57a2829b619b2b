"""The `nertune` command's Typer app, its entry point and what its commands share.

Data goes to stdout, progress and notices to stderr. A NertuneError becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

import typer

from nertune.errors import NertuneError
from nertune.training.signals import exit_at_once

app = typer.Typer(
    name="nertune",
    help="Fine-tune BERT-family encoders for named entity recognition, and put them to work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Fine-tune BERT-family encoders for named entity recognition, and put them to work."""


def _console():
    from nertune.console import console  # noqa: PLC0415  (CLI start-up: rich console)

    return console


def main() -> None:
    exit_at_once()  # from here on Ctrl-C / SIGTERM stop the command, whatever is importing (training/signals.py)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        app()
    except NertuneError as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
