"""`nertune train`: fine-tune on CoNLL data, evaluate each epoch, keep the best, tag a sample."""

from __future__ import annotations

import inspect
import json
import shlex
import sys
from typing import Optional

import typer
from rich.table import Table

from nertune.cli.app import _console, app
from nertune.cli.options import recipe_options, with_parameters
from nertune.training.api import train as run_training
from nertune.training.signals import TrainingInterrupted, say_on_interrupt

SAMPLE = "George Washington flew from Washington to Paris on Monday to meet officials of the European Union."


_OWN_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    for name, kind, default in [
        ("recipe", Optional[str], typer.Option(None, help="Recipe name in recipes/ (e.g. seed) or a YAML file. Default: the seed recipe.")),
        (
            "resume",
            bool,
            typer.Option(False, "--resume", help="Continue the run in --output-dir from its latest checkpoint (same other flags)."),
        ),
        (
            "overwrite",
            bool,
            typer.Option(
                False, "--overwrite", help="Replace the earlier run in --output-dir (its files are removed once the new run starts)."
            ),
        ),
        ("sample", str, typer.Option(SAMPLE, help="Sentence to tag at the end.")),
        ("json_out", bool, typer.Option(False, "--json", help="Print metrics.json to stdout.")),
        ("progress", bool, typer.Option(True, help="Show progress bars.")),
    ]
]


def train(**options) -> None:
    """Fine-tune on CoNLL data; evaluate each epoch; keep the best; tag a sample."""
    recipe, resume, overwrite, sample, json_out, progress = (
        options.pop(k) for k in ("recipe", "resume", "overwrite", "sample", "json_out", "progress")
    )
    say_on_interrupt("interrupted before training started: nothing was saved")
    try:
        metrics = run_training(recipe, progress=progress, resume=resume, overwrite=overwrite, **options)
    except TrainingInterrupted as stop:
        _console().print(
            f"interrupted at step {stop.step}; checkpoint {stop.checkpoint}; resume with: {_resume_command(stop.output_dir)}", markup=False
        )
        raise typer.Exit(stop.exit_code)
    if not metrics:  # not the main process
        return
    console = _console()
    table = Table(title="Results (entity scores: conlleval; accuracy: words)")
    for column in ("split", "loss", "precision", "recall", "F1", "accuracy"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in ("validation", "test"):
        if split in metrics:
            m = metrics[split]
            table.add_row(split, *(f"{m[k]:.4f}" for k in ("loss", "precision", "recall", "f1", "accuracy")))
    console.print(table)
    if sample:
        from nertune.tag.tagger import Tagger  # noqa: PLC0415  (CLI start-up: no torch)

        entities = Tagger.load(metrics["output_dir"])(sample)
        console.print(f"sample: {sample}")
        for entity in entities:
            console.print(f"  {entity['type']:<5} {entity['text']!r} [{entity['start']}:{entity['end']}] {entity['score']:.3f}")
    console.print(
        f"[green]model saved to {metrics['output_dir']}[/] ("
        + (f"the average of epochs {', '.join(map(str, metrics['averaged_epochs']))}, " if metrics.get("averaged_epochs") else "")
        + f"best epoch {metrics['best_epoch']}, "
        f"{metrics['train_seconds']:.0f} s in the training loop)"
    )
    if json_out:
        sys.stdout.write(json.dumps(metrics, indent=2) + "\n")


def _resume_command(output_dir) -> str:
    """This command line again, with --output-dir and --resume."""

    args = [a for a in sys.argv[1:] if a != "--resume"]
    if not any(a == "--output-dir" or a.startswith("--output-dir=") for a in args):
        args += ["--output-dir", str(output_dir)]
    return shlex.join(["nertune", *args, "--resume"])


app.command()(with_parameters(train, _OWN_OPTIONS[:1] + recipe_options() + _OWN_OPTIONS[1:]))
