"""What a run leaves behind in its folder: the step log, metrics.json, the model card, versions and git sha."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import sys
from pathlib import Path

import accelerate
import tokenizers
import torch
import yaml

from nertune import __version__
from nertune.atomic import write_json, write_text
from nertune.console import console, progress, stop_progress  # noqa: F401  (stop_progress: the loop's)
from nertune.evaluate.plots import plots_markdown, write_run_plots
from nertune.machine import cpu_description


class RunLog:
    """Per-step CSV in the run directory (trackers: training/tracking.py)."""

    FIELDS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "sentences_per_second"]

    def __init__(self, output_dir: Path, enabled: bool = True, append: bool = False):
        self.enabled = enabled
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

    def progress(self, description: str, total: int):
        """A live bar on a terminal, plain lines everywhere else (None on processes other than the main one)."""
        if not self.enabled:
            return None
        return progress(description, total)

    def step(self, step: int, epoch: int, loss: float, lr: float, grad_norm: float | None, rate: float) -> None:
        if not self.enabled:
            return
        self.csv.writerow([step, epoch, f"{loss:.6f}", f"{lr:.6g}", "" if grad_norm is None else f"{grad_norm:.4f}", f"{rate:.2f}"])
        self.handle.flush()

    def close(self) -> None:
        """Flush and close the CSV and the TensorBoard writer (a finished, failed or interrupted run alike)."""
        if not self.enabled:
            return
        self.handle.close()


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    import transformers  # noqa: PLC0415  (no transformers at import)

    return {
        "nertune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "accelerate": accelerate.__version__,
    }


def run_info(world_size: int, data_md5: dict, sha: str | None = None) -> dict:
    return {
        "world_size": world_size,
        "versions": versions(),
        "data_md5": data_md5,
        "git_sha": sha or git_sha(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": _cpus(), "cpu": cpu_description()},
    }


def peak_memory(device) -> dict:
    """The process's peak resident memory (MiB), and the GPU's peak allocation where it trains on one."""
    try:
        import resource  # noqa: PLC0415  (POSIX only)

        peak = {"host_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024))}
    except ImportError:
        peak = {}
    if getattr(device, "type", "cpu") == "cuda":
        peak["gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return peak


def _cpus() -> int:

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_run_files(output_dir: Path, metrics: dict, recipe, reports: dict, splits) -> None:
    write_json(output_dir / "metrics.json", metrics)
    write_text(output_dir / "recipe.yaml", yaml.safe_dump(recipe.model_dump(), sort_keys=False))
    plots = write_run_plots(output_dir, metrics, reports, splits)  # PNGs next to metrics.json, linked from the card
    write_text(output_dir / "README.md", model_card(metrics) + plots_markdown(plots))


def _kept(metrics: dict) -> str:
    if metrics.get("averaged_epochs"):
        return "the model is the average of epochs " + ", ".join(map(str, metrics["averaged_epochs"]))
    if "validation" not in metrics:
        return "no validation split: the last epoch is kept"
    return f"the best epoch by validation F1 is kept (epoch {metrics['best_epoch']})"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(metrics: dict) -> str:
    recipe = metrics["recipe"]
    rows = "\n".join(
        f"| {e['train_loss']:.4f} | {e['epoch']} | "
        + (
            " | ".join(_fmt(e["validation"][k]) for k in ("loss", "precision", "recall", "f1", "accuracy"))
            if "validation" in e
            else "- | - | - | - | -"
        )
        + " |"
        for e in metrics["epochs"]
    )
    headline = ""
    for split in ("validation", "test"):
        if split in metrics:
            m = metrics[split]
            headline += (
                f"- {split}: loss {m['loss']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f}, "
                f"F1 {m['f1']:.4f}, accuracy {m['accuracy']:.4f}\n"
            )
    per_type = ""
    if "test" in metrics or "validation" in metrics:
        split = "test" if "test" in metrics else "validation"
        per_type = (
            f"\n### Per type ({split})\n\n| type | precision | recall | F1 | support |\n|---|---|---|---|---|\n"
            + "\n".join(
                f"| {t} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
                for t, v in metrics[split]["per_type"].items()
            )
            + "\n"
        )
    return f"""---
library_name: transformers
pipeline_tag: token-classification
tags: [nertune, token-classification, ner]
---

# NER model fine-tuned with nertune

Base model: `{metrics["model"]}`, fine-tuned for named entity recognition on
{"the embedded CoNLL-2003 English splits" if recipe["data"] == "conll2003" and not recipe["train"] else "user-supplied CoNLL files"}
({metrics["train_sentences"]:,} training sentences{", validation included" if recipe.get("train_on_validation") else ""}).
Labels: {", ".join(metrics["labels"])}. {_kept(metrics).capitalize()}.

## Results (conlleval entity scores, word accuracy)

{headline}{per_type}
## Training results

| Training Loss | Epoch | Validation Loss | Precision | Recall | F1 | Accuracy |
|---|---|---|---|---|---|---|
{rows}

{_card_training(metrics)}
{_card_usage(recipe)}
## Framework versions

{chr(10).join(f"- {k}: {v}" for k, v in metrics["versions"].items())}
- git: {metrics["git_sha"]}
"""


def _card_training(metrics: dict) -> str:
    """Every recipe field that shapes the weights or what the model reads (recipe.yaml holds the whole recipe)."""
    r = metrics["recipe"]
    crf, context = bool(r.get("crf")), int(r.get("context_pieces") or 0)
    files = ", ".join(f"{split} {r[split]}" for split in ("train", "validation", "test") if r.get(split))
    accumulation = {
        "sentence": "each sentence's mean word loss counts equally in a step",
        "token": "every labelled word counts equally across a step",
    }.get(r["accumulation"], "")
    casing = (
        "true: each word's casing class (lower, Title, UPPER, mixed, digits; scheme shape6) as the token_type_ids of its wordpieces"
        if r.get("casing")
        else "false: token type 0 throughout"
    )
    context_text = (
        f"{context}: up to {context} wordpieces of the neighbouring sentences of the same document on each side of a sentence"
        if context
        else "0: each sentence alone"
    )
    head = (
        "true: a CRF head over the word scores (learned start, end and transition scores in crf.safetensors), decoded with Viterbi"
        if crf
        else "false: softmax head"
    )
    crf_rate = "(the CRF transition scores' peak rate, same warm-up and decay)" if crf else "(unused: no CRF head)"
    dropout = r.get("dropout") if r.get("dropout") is not None else "none (the encoder's own, from its config)"
    shared = f", sentences sharing one input up to {r['shared_window_pieces']} pieces" if r.get("shared_window_pieces") else ""
    return f"""## Training hyperparameters

What the model reads, and its head (recorded in config.json, applied by the Tagger and NerPipeline):

- casing: {casing}
- context_pieces: {context_text}
- crf: {head}
- max length: windows of the encoder's maximum length less [CLS] and [SEP]; a longer sentence is covered by overlapping windows, \
every word scored once from its first wordpiece

Training:

- data: {r["data"]}{f" ({files})" if files else ""}; max_train_sentences: {_flag(r.get("max_train_sentences"))}, \
max_eval_sentences: {_flag(r.get("max_eval_sentences"))} (none: all); hold_out: {_flag(r.get("hold_out"))} \
(K/N: the training documents of fold K of N left out, for a cross-fitted teacher)
- learning_rate: {r["learning_rate"]}
- crf_learning_rate: {r.get("crf_learning_rate")} {crf_rate}
- dropout: {dropout}
- train_batch_size: {r["batch_size"]}
- gradient_accumulation_steps: {r["grad_accum"]}
- total_train_batch_size: {r["batch_size"] * r["grad_accum"]} (x{metrics["world_size"]} processes)
- accumulation semantics: {r["accumulation"]} ({accumulation})
- optimizer: Adam with betas=({r["adam_beta1"]},{r["adam_beta2"]}), epsilon={r["adam_epsilon"]}, weight decay {r["weight_decay"]}
- max_grad_norm: {r["max_grad_norm"]}
- lr_scheduler_type: {r["lr_scheduler"]}, warmup ratio {r["warmup_ratio"]}
- num_epochs: {r["epochs"]}; patience: {_flag(r.get("patience"))} ({_kept(metrics)})
- steps: pack {_flag(r.get("pack"))}, group_by_length {_flag(r.get("group_by_length"))} (none: only where windows are not packed){shared}
- mixed_precision: {r["mixed_precision"]} (ran as: {metrics["precision"]})
- seed: {r["seed"]}
- teacher: {_flag(r.get("teacher"))}{f" (share of the loss {r['distill_weight']})" if r.get("teacher") else ""}
- training time in the loop: {metrics["train_seconds"]:.0f} s
"""


def _flag(value) -> str:
    """A recipe value as the card writes it: true / false / none, anything else as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _card_usage(recipe: dict) -> str:
    """How to tag with this model, and what the plain transformers pipeline does differently with it."""
    casing, context, crf = bool(recipe.get("casing")), int(recipe.get("context_pieces") or 0), bool(recipe.get("crf"))
    own = []
    if casing:
        own.append(
            "- **casing**: it ignores the casing classes. This model reads each word's casing class as the token_type_ids "
            "of its wordpieces (config.json `nertune_casing`); the plain pipeline gives every wordpiece token type 0, "
            "the class of punctuation, so the model sees no capitalisation at all and its tags differ."
        )
    if context:
        own.append(
            f"- **context_pieces {context}**: it gives no document context. This model was trained to see each sentence with "
            f"up to {context} wordpieces of its neighbours on each side (config.json `nertune_context_pieces`); the plain "
            "pipeline tags a one-sentence text alone, and a longer text as one window, never in that layout."
        )
    if crf:
        own.append(
            "- **CRF head**: it ignores the CRF. The start, end and label-to-label transition scores in `crf.safetensors` "
            "(config.json `nertune_crf`) are never loaded: each word gets the argmax of its own scores, not the best tag "
            "sequence the model was trained to produce, so its tags differ."
        )
    if own:
        lead = "It runs this model without what it was trained with:\n\n" + "\n".join(own) + "\n\nand, as for any nertune model:"
    else:
        lead = (
            "This model has a softmax head and reads no casing or context, so the plain pipeline feeds it the same wordpieces "
            "and token types as the Tagger. It differs only in how text becomes windows and words, and words entities (for a "
            "one-sentence text where the two agree on words and tags, the scores agree too: the mean of the words' "
            "first-wordpiece probabilities):"
        )
    common = [
        "- **words**: it splits a word at every punctuation character (the tokenizer's pre-tokenizer), so `AL-AIN`, `Jean-Luc`, "
        "`U.S.` or `J.` become several words tagged one by one; the Tagger tags Penn-Treebank words, as CoNLL-2003 was "
        "tokenized, each by its first wordpiece.",
        "- **sentences and length**: it runs a whole text in one window and silently drops what lies past the tokenizer's "
        "maximum length; the Tagger splits the text into sentences, each in its own window (overlapping windows for a long one).",
        "- **decoding**: it takes each word's most probable tag (an I-X after O starts an entity); the Tagger decodes the most "
        f"probable valid IOB2 sequence{' under the CRF transitions' if crf else ''}.",
        "- **`word`**: it gives the decoded wordpieces (lower case for an uncased tokenizer); NerPipeline gives the text itself.",
    ]
    return f"""## How to use

```python
from nertune import Tagger
tagger = Tagger.load(".")
tagger("George Washington went to Washington.")
```

The same entities through transformers (with nertune installed; no remote code), as `Tagger.load(".", precision="fp32")`
gives them (on a CPU with bf16 the Tagger's default is bf16, which moves a few):

```python
from transformers import pipeline
from nertune.tag.pipeline import NerPipeline
ner = pipeline("token-classification", model=".", pipeline_class=NerPipeline)
ner("George Washington went to Washington.")  # the Tagger's entities: entity_group, score, word, start, end
```

The plain `pipeline("token-classification", model=".", aggregation_strategy="first")` loads this folder but does
not tag as the Tagger does. {lead}

{chr(10).join(common)}
"""
