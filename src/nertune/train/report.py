"""What a run leaves behind: progress on stderr, a step log, metrics.json, a model card."""

from __future__ import annotations

import csv
import platform
import subprocess
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nertune.atomic import write_json, write_text

console = Console(stderr=True, soft_wrap=True)  # progress and notices on stderr; stdout is for data


def notice(text: str) -> None:
    """A yellow `notice:` line on stderr; the text is printed as written (file names may hold [brackets])."""
    from rich.markup import escape

    console.print(f"[yellow]notice:[/] {escape(text)}", highlight=False)


class _Bar:
    def __init__(self, description: str, total: int):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} sent/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task(description, total=total, loss="-", rate="-")
        self.progress.start()

    def update(self, loss: float, rate: float) -> None:
        self.progress.update(self.task, loss=f"{loss:.4f}", rate=f"{rate:.1f}")

    def advance(self) -> None:
        self.progress.advance(self.task)

    def close(self) -> None:
        self.progress.stop()


class RunLog:
    """Per-step CSV (and TensorBoard when installed) in the run directory."""

    FIELDS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "sentences_per_second"]

    def __init__(self, output_dir: Path, enabled: bool = True, append: bool = False):
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        self.path = output_dir / "train_log.csv"
        append = append and self.path.exists()  # a resumed run continues its log
        self.handle = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.handle)
        if not append:
            self.csv.writerow(self.FIELDS)
            self.handle.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:
            pass

    def progress(self, description: str, total: int):
        return _Bar(description, total) if self.enabled else None

    def step(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float | None, rate: float) -> None:
        if not self.enabled:
            return
        self.csv.writerow([step, epoch, f"{loss:.6f}", f"{lr:.6g}", "" if grad_norm is None else f"{grad_norm:.4f}", f"{rate:.2f}"])
        self.handle.flush()
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/learning_rate", lr, step)


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import accelerate
    import tokenizers
    import torch
    import transformers

    from nertune import __version__

    return {"nertune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "accelerate": accelerate.__version__}


def run_info(world_size: int, data_md5: dict, sha: str | None = None) -> dict:
    return {"world_size": world_size, "versions": versions(), "data_md5": data_md5, "git_sha": sha or git_sha(),
            "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus()}}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_run_files(output_dir: Path, metrics: dict, recipe, reports: dict, splits) -> None:
    write_json(output_dir / "metrics.json", metrics)
    write_text(output_dir / "recipe.yaml", yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    from nertune.evaluate.plots import plots_markdown, write_run_plots

    plots = write_run_plots(output_dir, metrics, reports, splits)  # PNGs next to metrics.json, linked from the card
    write_text(output_dir / "README.md", model_card(metrics) + plots_markdown(plots))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(metrics: dict) -> str:
    recipe = metrics["recipe"]
    rows = "\n".join(
        f"| {e['train_loss']:.4f} | {e['epoch']} | "
        + (" | ".join(_fmt(e["validation"][k]) for k in ("loss", "precision", "recall", "f1", "accuracy")) if "validation" in e else "- | - | - | - | -")
        + " |"
        for e in metrics["epochs"]
    )
    headline = ""
    for split in ("validation", "test"):
        if split in metrics:
            m = metrics[split]
            headline += f"- {split}: loss {m['loss']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}, accuracy {m['accuracy']:.4f}\n"
    per_type = ""
    if "test" in metrics or "validation" in metrics:
        split = "test" if "test" in metrics else "validation"
        per_type = f"\n### Per type ({split})\n\n| type | precision | recall | F1 | support |\n|---|---|---|---|---|\n" + "\n".join(
            f"| {t} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |" for t, v in metrics[split]["per_type"].items()
        ) + "\n"
    return f"""---
library_name: transformers
pipeline_tag: token-classification
tags: [nertune, token-classification, ner]
---

# NER model fine-tuned with nertune

Base model: `{metrics['model']}`, fine-tuned for named entity recognition on
{'the embedded CoNLL-2003 English splits' if recipe['data'] == 'conll2003' and not recipe['train'] else 'user-supplied CoNLL files'}
({metrics['train_sentences']:,} training sentences). Labels: {', '.join(metrics['labels'])}.
Best epoch by validation F1: {metrics['best_epoch']}.

## Results (conlleval entity scores, word accuracy)

{headline}{per_type}
## Training results

| Training Loss | Epoch | Validation Loss | Precision | Recall | F1 | Accuracy |
|---|---|---|---|---|---|---|
{rows}

## Training hyperparameters

- learning_rate: {recipe['learning_rate']}
- train_batch_size: {recipe['batch_size']}
- gradient_accumulation_steps: {recipe['grad_accum']}
- total_train_batch_size: {recipe['batch_size'] * recipe['grad_accum']} (x{metrics['world_size']} processes)
- accumulation semantics: {recipe['accumulation']}
- optimizer: Adam with betas=({recipe['adam_beta1']},{recipe['adam_beta2']}), epsilon={recipe['adam_epsilon']}, weight decay {recipe['weight_decay']}
- max_grad_norm: {recipe['max_grad_norm']}
- lr_scheduler_type: {recipe['lr_scheduler']}, warmup ratio {recipe['warmup_ratio']}
- num_epochs: {recipe['epochs']}
- mixed_precision: {recipe['mixed_precision']} (ran as: {metrics['precision']})
- seed: {recipe['seed']}
- training time in the loop: {metrics['train_seconds']:.0f} s

## How to use

```python
from nertune import Tagger
tagger = Tagger.load("{'.'}")
tagger("George Washington went to Washington.")
```

or with plain transformers (softmax head, first-subword labels):

```python
from transformers import pipeline
ner = pipeline("token-classification", model=".", aggregation_strategy="first")
```

## Framework versions

{chr(10).join(f'- {k}: {v}' for k, v in metrics['versions'].items())}
- git: {metrics['git_sha']}
"""
