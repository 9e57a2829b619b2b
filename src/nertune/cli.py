"""The `nertune` command: train, and later evaluate / score / predict / serve / export.

Data goes to stdout, progress and notices to stderr. A NertuneError becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer
from rich.table import Table

from nertune.errors import NertuneError

app = typer.Typer(
    name="nertune",
    help="Fine-tune BERT-family encoders for named entity recognition, and put them to work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SAMPLE = "George Washington flew from Washington to Paris on Monday to meet officials of the European Union."


@app.callback()
def _root() -> None:
    """Fine-tune BERT-family encoders for named entity recognition, and put them to work."""


def _console():
    from nertune.train.report import console

    return console


@app.command()
def train(
    recipe: Optional[str] = typer.Option(None, help="Recipe name in recipes/ (e.g. seed) or a YAML file. Default: the seed recipe."),
    model: Optional[str] = typer.Option(None, help="Encoder: a local folder or a Hugging Face id, or a finished run's folder to train it further. Default: the embedded MiniLM (embedded-minilm)."),
    data: Optional[str] = typer.Option(None, help="'conll2003' (embedded, the default) — or give files with --train/--validation/--test."),
    train_file: Optional[str] = typer.Option(None, "--train", help="Training CoNLL file."),
    validation_file: Optional[str] = typer.Option(None, "--validation", help="Validation CoNLL file."),
    test_file: Optional[str] = typer.Option(None, "--test", help="Test CoNLL file."),
    max_train_sentences: Optional[int] = typer.Option(None, help="Use the first N training sentences."),
    max_eval_sentences: Optional[int] = typer.Option(None, help="Use the first N validation / test sentences."),
    ragged_columns: Optional[bool] = typer.Option(None, "--ragged-columns", help="Data lines may differ in column count: the tag is the last column (default: refused, as conlleval.pl does)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (seed: 3)."),
    learning_rate: Optional[float] = typer.Option(None, help="Peak learning rate (seed: 2e-5)."),
    batch_size: Optional[int] = typer.Option(None, help="Sentences per micro-batch in the recipe (seed: 1)."),
    grad_accum: Optional[int] = typer.Option(None, help="Gradient accumulation steps (seed: 16)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (seed: 42)."),
    accumulation: Optional[str] = typer.Option(None, help="'sentence' (each sentence's mean loss equal; the seed's) or 'token'."),
    mixed_precision: Optional[str] = typer.Option(None, help="auto | bf16 | fp16 | no."),
    warmup_ratio: Optional[float] = typer.Option(None, help="Fraction of steps for linear warm-up (seed: 0)."),
    dropout: Optional[float] = typer.Option(None, help="Set every dropout probability of the encoder (default: the model's own)."),
    casing: Optional[bool] = typer.Option(None, "--casing/--no-casing", help="Words' casing classes as token types, for uncased encoders (seed: off; docs/features.md)."),
    context_pieces: Optional[int] = typer.Option(None, help="Wordpieces of neighbouring sentences of the same document on each side (seed: 0, off)."),
    crf: Optional[bool] = typer.Option(None, "--crf/--no-crf", help="A CRF head over the word scores instead of a plain softmax (seed: off; docs/features.md)."),
    pack: Optional[bool] = typer.Option(None, "--pack/--no-pack", help="Several windows per row of a forward pass, each masked to itself: the same gradient, less padding (default: on where exact; BENCHMARKS.md)."),
    group_by_length: Optional[bool] = typer.Option(None, "--group-by-length/--ungrouped", help="Steps of similar-length sentences, or random ones as the Trainer draws them (default: grouped only where windows are not packed)."),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--eager", help="On a GPU, replay each packed step shape's forward and backward from a CUDA graph (default: on where it applies: one GPU, packed rows)."),
    output_dir: Optional[str] = typer.Option(None, help="Run directory (default runs/<timestamp>)."),
    save_every_steps: Optional[int] = typer.Option(None, help="Also save a resumable checkpoint every N steps (one is saved at each epoch end)."),
    keep_checkpoints: Optional[int] = typer.Option(None, help="Keep the newest K checkpoints in DIR/checkpoints (default 2)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --output-dir from its latest checkpoint (same other flags)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the earlier run in --output-dir (its files are removed once the new run starts)."),
    patience: Optional[int] = typer.Option(None, help="Stop early when validation F1 has not improved for N epochs."),
    sample: str = typer.Option(SAMPLE, help="Sentence to tag at the end."),
    json_out: bool = typer.Option(False, "--json", help="Print metrics.json to stdout."),
    progress: bool = typer.Option(True, help="Show progress bars."),
):
    """Fine-tune on CoNLL data; evaluate each epoch; keep the best; tag a sample."""
    from nertune.train.signals import TrainingInterrupted, say_on_interrupt

    say_on_interrupt("interrupted before training started: nothing was saved")
    from nertune.api import train as run_training

    try:
        metrics = run_training(
            recipe, progress=progress, resume=resume, overwrite=overwrite, model=model, data=data, train=train_file, validation=validation_file,
            test=test_file, max_train_sentences=max_train_sentences, max_eval_sentences=max_eval_sentences, ragged_columns=ragged_columns, epochs=epochs,
            learning_rate=learning_rate, batch_size=batch_size, grad_accum=grad_accum, seed=seed, accumulation=accumulation,
            mixed_precision=mixed_precision, warmup_ratio=warmup_ratio, dropout=dropout, casing=casing, context_pieces=context_pieces, crf=crf, pack=pack,
            group_by_length=group_by_length, cuda_graphs=cuda_graphs, output_dir=output_dir,
            save_every_steps=save_every_steps, keep_checkpoints=keep_checkpoints, patience=patience,
        )
    except TrainingInterrupted as stop:
        _console().print(f"interrupted at step {stop.step}; checkpoint {stop.checkpoint}; resume with: {_resume_command(stop.output_dir)}", markup=False)
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
    table.add_row("seed (published)", "0.0626", "0.9201", "0.9350", "0.9275", "0.9832", style="dim")
    console.print(table)
    if sample:
        from nertune.tag.tagger import Tagger

        entities = Tagger.load(metrics["output_dir"])(sample)
        console.print(f"sample: {sample}")
        for entity in entities:
            console.print(f"  {entity['type']:<5} {entity['text']!r} [{entity['start']}:{entity['end']}] {entity['score']:.3f}")
    console.print(f"[green]model saved to {metrics['output_dir']}[/] (best epoch {metrics['best_epoch']}, "
                  f"{metrics['train_seconds']:.0f} s in the training loop)")
    if json_out:
        sys.stdout.write(json.dumps(metrics, indent=2) + "\n")


def _resume_command(output_dir) -> str:
    """This command line again, with --output-dir and --resume."""
    import shlex

    args = [a for a in sys.argv[1:] if a != "--resume"]
    if not any(a == "--output-dir" or a.startswith("--output-dir=") for a in args):
        args += ["--output-dir", str(output_dir)]
    return shlex.join(["nertune", *args, "--resume"])


def main() -> None:
    from nertune.train.signals import exit_at_once

    exit_at_once()  # from here on Ctrl-C / SIGTERM stop the command, whatever is importing (train/signals.py)
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


# Each command family lives in its own module and registers itself on `app`.
from nertune import cli_evaluate, cli_export, cli_predict, cli_serve  # noqa: E402,F401
