"""Command start-up, side by side in one run: what a user waits for before the first tag or error.

Each line is the median wall time of 3 fresh interpreter runs, one at a time (nothing else running):
- the Treebank tokenizer as data/words.py loads it (nltk's package __init__ skipped) vs `import nltk` whole;
- `nertune predict` on one sentence, with a PyTorch model directory and with its ONNX export (fp32);
- a mistyped model directory in predict / export / evaluate / serve, against what the commands used to import
  before checking it (torch and transformers' model classes).
The models are a 16-sentence, 1-epoch run of the embedded MiniLM and its export, made first (not timed).
Output recorded in benchmarks/serve/results/startup.txt:

    .venv/bin/python -m benchmarks.serve.startup > benchmarks/serve/results/startup.txt
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 3
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NERTUNE = [sys.executable, "-m", "nertune"]


def seconds(command: list[str], stdin: str | None = None, expect: int = 0) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=ENV)
        times.append(time.perf_counter() - started)
        assert done.returncode == expect, (command, done.returncode, done.stderr[-2000:])
    return statistics.median(times)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run, onnx = Path(tmp) / "run", Path(tmp) / "onnx"
        for command in (
            [
                *NERTUNE,
                "train",
                "--max-train-sentences",
                "16",
                "--max-eval-sentences",
                "8",
                "--epochs",
                "1",
                "--output-dir",
                str(run),
                "--no-progress",
                "--sample",
                "",
            ],
            [*NERTUNE, "export", str(run), "--onnx", str(onnx)],
        ):
            subprocess.run(command, check=True, capture_output=True, env=ENV)
        sentence = "EU rejects German call to boycott British lamb .\n"
        rows = [
            (
                "Treebank tokenizer, as data/words.py loads it",
                seconds(python("from nertune.data.words import split_words; split_words('U.S. is here.')")),
            ),
            ("import nltk (the whole package)", seconds(python("import nltk"))),
            ("nertune predict, PyTorch model, one sentence", seconds([*NERTUNE, "predict", str(run), "-"], sentence)),
            ("nertune predict, ONNX export, one sentence", seconds([*NERTUNE, "predict", str(onnx), "-"], sentence)),
        ]
        typo = str(Path(tmp) / "typo")
        for command in (
            ["predict", typo, "--text", "x"],
            ["export", typo, "--onnx", str(Path(tmp) / "out")],
            ["evaluate", typo],
            ["serve", typo],
        ):
            rows.append((f"nertune {command[0]}, missing model directory (error)", seconds([*NERTUNE, *command], expect=2)))
        rows.append(
            (
                "import torch + transformers' BERT model class (what they loaded before the check)",
                seconds(python("import torch; from transformers import BertForTokenClassification")),
            )
        )
    width = max(len(name) for name, _ in rows)
    print(f"median of {RUNS} fresh runs each, wall seconds")
    for name, value in rows:
        print(f"{name:<{width}}  {value:6.2f}")


if __name__ == "__main__":
    main()
