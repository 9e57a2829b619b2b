"""Which of a recipe's training passes run the last layer at the scored positions only (model/scored_rows.py
`WORTH_IT`), and what the run learns when none does (issue 26: the seed recipe's F1 at fd2d736).

    python -m benchmarks.train.cut_passes count [--recipe seed]   # replay every pass of the recipe's epochs
    python -m benchmarks.train.cut_passes whole                   # train_speed.py's nertune side, WORTH_IT = 0
"""

from __future__ import annotations

import argparse
import random
import runpy
import sys

WHOLE_ARGS = [
    "--sentences",
    "14041",
    "--eval-sentences",
    "3250",
    "--epochs",
    "3",
    "--model",
    "embedded-minilm",
    "--learning-rate",
    "2e-05",
    "--system",
    "nertune",
]


def count(recipe_name: str) -> None:
    import torch  # noqa: PLC0415

    from benchmarks.train.floor import recipe_windows  # noqa: PLC0415
    from nertune.data.features import length_grouped_steps  # noqa: PLC0415
    from nertune.data.packing import pack_layout  # noqa: PLC0415
    from nertune.model.positions import packing_offset  # noqa: PLC0415
    from nertune.model.scored_rows import WORTH_IT  # noqa: PLC0415
    from nertune.training.recipe import load_recipe  # noqa: PLC0415
    from nertune.training.step import forward_passes, pad_multiple_for  # noqa: PLC0415

    recipe = load_recipe(recipe_name)
    model, tokenizer, sentences, windows = recipe_windows(recipe)
    windows_of: list[list[int]] = [[] for _ in sentences]
    for index, window in enumerate(windows):
        windows_of[window.sequence].append(index)
    lengths = [sum(len(windows[i].input_ids) for i in w) for w in windows_of]
    offset, multiple, order = packing_offset(model), pad_multiple_for(torch.device("cpu")), random.Random(recipe.seed)
    shares = []
    for _ in range(recipe.epochs):
        for step in length_grouped_steps(lengths, recipe.sentences_per_step, order, bool(recipe.group_by_length)):
            step_windows = [windows[i] for s in step for i in windows_of[s]]
            for chunk in forward_passes([len(w.input_ids) for w in step_windows], recipe.max_tokens_per_forward):
                chosen = [step_windows[i] for i in chunk]
                rows = pack_layout(chosen, tokenizer.pad_token_id, offset, multiple).input_ids
                shares.append(sum(len(w.first_pieces) for w in chosen) / rows.numel())
    cut = sum(share <= WORTH_IT for share in shares)
    median = sorted(shares)[len(shares) // 2]
    print(f"{recipe_name}: {len(shares)} passes, {cut} cut (scored share <= {WORTH_IT}); min {min(shares):.3f}, median {median:.3f}")


def whole() -> None:
    import nertune.model.scored_rows as scored_rows  # noqa: PLC0415

    scored_rows.WORTH_IT = 0.0  # every pass runs the whole last layer, as before 97d7457
    sys.argv = ["train_speed", *WHOLE_ARGS]
    runpy.run_module("benchmarks.train.train_speed", run_name="__main__")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["count", "whole"])
    parser.add_argument("--recipe", default="seed")
    args = parser.parse_args()
    count(args.recipe) if args.what == "count" else whole()


if __name__ == "__main__":
    main()
