"""What document context costs: wordpieces per training window at each context size.

Builds the training windows of the whole CoNLL-2003 train split as `nertune
train` does (build_windows with the model config's nertune_context_pieces) and
counts the input pieces ([CLS] and [SEP] included) and the sum of squared
window lengths (attention's share). For sentences this short, a CPU step's time
grows roughly with the piece count, so the ratio to context 0 is a
load-independent estimate of how much longer training and tagging take;
time a real run for the final word.

    .venv/bin/python -m benchmarks.train.context_cost [--sizes 0 16 32 64]      -> benchmarks/train/results/context_cost.json
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from benchmarks.common import git_sha, results_dir, write_result
from nertune.console import console
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.model.load import load_tokenizer
from nertune.model.word_scores import build_windows

OUT = results_dir(__file__) / "context_cost.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 16, 32, 64])
    args = parser.parse_args()
    tokenizer = load_tokenizer("embedded-minilm")
    sentences = read_conll(conll2003_files()["train"]).sentences
    words, documents = [s.words for s in sentences], [s.document for s in sentences]
    rows = []
    for size in args.sizes:
        windows = build_windows(tokenizer, words, 510, config=SimpleNamespace(nertune_context_pieces=size), documents=documents)
        lengths = [len(w.input_ids) for w in windows]
        rows.append(
            {
                "context_pieces": size,
                "windows": len(windows),
                "pieces": sum(lengths),
                "mean_pieces": round(sum(lengths) / len(lengths), 1),
                "sum_squared": sum(n * n for n in lengths),
            }
        )
        base = rows[0]
        console.print(
            f"context {size:>3}: {rows[-1]['mean_pieces']:6.1f} pieces a window, "
            f"{rows[-1]['pieces'] / base['pieces']:.2f}x the pieces of context {base['context_pieces']}, "
            f"{rows[-1]['sum_squared'] / base['sum_squared']:.1f}x the attention"
        )
    write_result(
        OUT,
        {
            "split": "conll2003 train",
            "sentences": len(sentences),
            "model": "embedded-minilm (max 510 pieces)",
            "rows": rows,
            "git_sha": git_sha(),
        },
    )
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
