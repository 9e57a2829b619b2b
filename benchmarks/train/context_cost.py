"""What document context costs: wordpieces per training window at each context size.

Builds the training windows of the whole CoNLL-2003 train split as `nertune
train` does (build_windows with the model config's nertune_context_pieces) and
counts the input pieces ([CLS] and [SEP] included) and the sum of squared
window lengths (attention's share). For sentences this short, a CPU step's time
grows roughly with the piece count, so the ratio to context 0 is a
load-independent estimate of how much longer training and tagging take;
time a real run for the final word. With `--shared`, also for training inputs shared by consecutive
sentences (the recipe's `shared_window_pieces`): a shared input is counted once, as a step runs it.

    .venv/bin/python -m benchmarks.train.context_cost [--sizes 0 16 32 64]      -> benchmarks/train/results/context_cost.json
    .venv/bin/python -m benchmarks.train.context_cost --sizes 0 16 64 --shared 0 64 128 256 --out context_cost-shared.json
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

from benchmarks.common import git_sha, results_dir, write_result
from nertune.console import console
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.features import distinct_inputs
from nertune.model.load import load_tokenizer
from nertune.model.word_scores import build_windows

OUT = results_dir(__file__) / "context_cost.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 16, 32, 64])
    parser.add_argument("--shared", type=int, nargs="+", default=[0], help="shared_window_pieces values (0: a window per sentence)")
    parser.add_argument("--out", default=OUT.name, help="file name under benchmarks/train/results")
    args = parser.parse_args()
    tokenizer = load_tokenizer("embedded-minilm")
    sentences = read_conll(conll2003_files()["train"]).sentences
    words, documents = [s.words for s in sentences], [s.document for s in sentences]
    rows = []
    for size in args.sizes:
        for shared in args.shared:
            config = SimpleNamespace(nertune_context_pieces=size)
            windows = build_windows(tokenizer, words, 510, config=config, documents=documents, shared_pieces=shared)
            inputs, _ = distinct_inputs(windows)
            lengths = [len(w.input_ids) for w in inputs]
            row = {"context_pieces": size} | ({"shared_window_pieces": shared} if args.shared != [0] else {})
            rows.append(
                row
                | {
                    "windows": len(inputs),
                    "pieces": sum(lengths),
                    "mean_pieces": round(sum(lengths) / len(lengths), 1),
                    "sum_squared": sum(n * n for n in lengths),
                    "scored_share": round(sum(len(w.first_pieces) for w in windows) / sum(lengths), 3),
                }
            )
            base = rows[0]
            console.print(
                f"context {size:>3}, shared {shared:>3}: {len(inputs):6d} inputs, {rows[-1]['mean_pieces']:6.1f} pieces an input, "
                f"{rows[-1]['pieces'] / base['pieces']:.2f}x the pieces of the first row, "
                f"{rows[-1]['sum_squared'] / base['sum_squared']:.1f}x the attention, scored share {rows[-1]['scored_share']}"
            )
    out = OUT.parent / args.out
    write_result(
        out,
        {
            "split": "conll2003 train",
            "sentences": len(sentences),
            "model": "embedded-minilm (max 510 pieces)",
            "rows": rows,
            "git_sha": git_sha(),
        },
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
