"""The last layer at the scored positions only (model/scored_rows.py), on and off, side by side (issue 26).

    python -m benchmarks.train.scored_rows [--rounds 3] [--steps 12] [--runs RUN_DIR ...] [--name NAME]
        -> benchmarks/train/results/scored_rows-NAME-<precision>cpu.txt

1. Training: `seed` and `minilm-context-crf-8ep` (`make train`'s recipe when measured): the model as the loop trains it and
   --steps of its optimizer steps (from the first --sentences train sentences, cut into passes as the loop cuts
   them), forward and backward, the two variants alternated in one process (their order reversed each round):
   wall and CPU seconds. Whole runs on a 2-core VM move by more than the change between runs.
2. Tagging: each --runs folder (a run nertune trained) tags every CoNLL-2003 test sentence by `predict_word_logits`
   in its own windows (context and casing as the model has them), the variants alternated in one process.
The "off" variant swaps `only_scored` for a context that does nothing where the code calls it. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from benchmarks.common import cpu_line, git_sha, write_report

RECIPES = ("seed", "minilm-context-crf-8ep")


def _off(*args, **kwargs):
    """The "off" variant of `only_scored`: a context that does nothing."""
    return contextlib.nullcontext()


def recipe_steps(name: str, sentences: int, steps: int):
    """The model as the loop trains it (casing, context, CRF, cheap dropout) and `steps` of its optimizer
    steps over the first `sentences` train sentences, with their loss weights, cut as the loop cuts them."""
    import random  # noqa: PLC0415

    from benchmarks.train.floor import recipe_windows  # noqa: PLC0415
    from nertune.data.features import length_grouped_steps  # noqa: PLC0415
    from nertune.model.loss import window_weights  # noqa: PLC0415
    from nertune.model.positions import packing_offset  # noqa: PLC0415
    from nertune.training.recipe import load_recipe  # noqa: PLC0415
    from nertune.training.speed.dropout import use_cheap_dropout  # noqa: PLC0415

    recipe = load_recipe(name, {"max_train_sentences": sentences, "max_eval_sentences": 10})
    model, tokenizer, train, windows = recipe_windows(recipe)
    use_cheap_dropout(model)
    model.train()
    offset = packing_offset(model) if recipe.pack else None
    group = offset is None if recipe.group_by_length is None else recipe.group_by_length
    words = [len(s.words) for s in train]
    chosen = length_grouped_steps([len(w.input_ids) for w in windows], recipe.sentences_per_step, random.Random(recipe.seed), group)[:steps]
    cut = []
    for step in chosen:
        step_windows = [windows[i] for i in step]
        step_words = sum(words[w.sequence] for w in step_windows)
        weights = window_weights(step_windows, words, recipe.accumulation, recipe.sentences_per_step, step_words)
        cut.append((step_windows, weights))
    return recipe, model, tokenizer, cut, offset


def training(rounds: int, sentences: int, steps: int) -> list[str]:
    import torch  # noqa: PLC0415

    import nertune.training.step as step  # noqa: PLC0415

    lines = [f"## 1. Training steps ({steps} a timing, forward and backward, no optimizer) alternated in one process; wall and CPU seconds"]
    shipped = step.only_scored
    for name in RECIPES:
        recipe, model, tokenizer, cut, offset = recipe_steps(name, sentences, steps)
        seconds = {"on": [], "off": []}
        for round_ in range(rounds + 1):  # the first round warms up
            for variant in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                step.only_scored = shipped if variant == "on" else _off
                wall, cpu = time.perf_counter(), time.process_time()
                for windows, weights in cut:
                    step.forward_backward(
                        model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), recipe.max_tokens_per_forward,
                        position_offset=offset,
                    )  # fmt: skip
                    model.zero_grad(set_to_none=True)
                if round_:
                    seconds[variant].append((time.perf_counter() - wall, time.process_time() - cpu))
        step.only_scored = shipped
        tokens = sum(len(w.input_ids) for windows, _ in cut for w in windows)
        scored = sum(len(w.first_pieces) for windows, _ in cut for w in windows)
        lines.append(f"{name}: {tokens} window tokens, {scored} scored ({scored / tokens:.0%}), packed: {offset is not None}")
        for variant in ("off", "on"):
            walls, cpus = zip(*seconds[variant])
            lines.append(
                f"{name} {variant}: wall {' '.join(f'{s:.2f}' for s in walls)} s (median {statistics.median(walls):.2f});"
                f" CPU {' '.join(f'{s:.2f}' for s in cpus)} s (median {statistics.median(cpus):.2f})"
            )
        ratio = {k: statistics.median(x[k] for x in seconds["off"]) / statistics.median(x[k] for x in seconds["on"]) for k in (0, 1)}
        lines.append(f"{name}: on is {ratio[0]:.3f}x off in wall time, {ratio[1]:.3f}x in CPU time, by the medians")
    return lines


def tagging(runs: list[str], rounds: int) -> list[str]:
    import torch  # noqa: PLC0415

    import nertune.model.word_scores as word_scores  # noqa: PLC0415
    from nertune.data.conll import read_conll  # noqa: PLC0415
    from nertune.data.embedded import conll2003_files  # noqa: PLC0415
    from nertune.model.load import for_inference, load_tokenizer, load_trained  # noqa: PLC0415

    test = read_conll(conll2003_files()["test"]).sentences
    lines = [f"## 2. Tagging: predict_word_logits over the {len(test)} test sentences, fp32, in one process"]
    shipped = word_scores.only_scored
    for run in runs:
        model, tokenizer = for_inference(load_trained(run), torch.float32), load_tokenizer(run)
        seconds = {"on": [], "off": []}
        logits = {}
        for round_ in range(rounds + 1):  # the first round warms up
            for variant in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                word_scores.only_scored = shipped if variant == "on" else _off
                started = time.perf_counter()
                scores, _ = word_scores.sentence_word_logits(model, tokenizer, test, "cpu", None, 16384)
                if round_:
                    seconds[variant].append(time.perf_counter() - started)
                logits[variant] = torch.cat(scores.logits)
        word_scores.only_scored = shipped
        on, off = statistics.median(seconds["on"]), statistics.median(seconds["off"])
        differ = (logits["on"] - logits["off"]).abs().max().item()
        agree = (logits["on"].argmax(-1) == logits["off"].argmax(-1)).float().mean().item()
        lines += [
            f"{run} off: {' '.join(f'{s:.2f}' for s in seconds['off'])} s; median {off:.2f} s",
            f"{run} on: {' '.join(f'{s:.2f}' for s in seconds['on'])} s; median {on:.2f} s",
            f"{run}: on is {off / on:.3f}x off by the medians; word logits differ by at most {differ:.2e}, argmax agrees on {agree:.4%}",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--runs", nargs="*", default=[])
    parser.add_argument("--name", default="minilm")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    lines = [f"# scored_rows: code {git_sha()}", f"# {cpu_line()}"]
    if not args.skip_training:
        lines += training(args.rounds, args.sentences, args.steps)
    if args.runs:
        lines += tagging(args.runs, args.rounds)
    print("\n".join(lines))
    write_report(__file__, f"scored_rows-{args.name}", lines)


if __name__ == "__main__":
    main()
