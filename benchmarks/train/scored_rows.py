"""The last layer at the scored positions only (model/scored_rows.py), on and off, side by side (issue 26).

    python -m benchmarks.train.scored_rows [--rounds 3] [--sentences 800] [--runs RUN_DIR ...] [--name NAME]
        -> benchmarks/train/results/scored_rows-NAME-<precision>cpu.txt

1. Training: `seed` and `make train`'s recipe (`minilm-context-crf-8ep`, cut to one epoch) on the first
   --sentences CoNLL-2003 train sentences, each run in its own process, the two variants alternated (their order
   reversed each round): time in the loop and sentences/s, and the validation F1 on 500 sentences (dropout draws
   differ between the variants, so F1 moves by a run's noise, not by the change).
2. Tagging: each --runs folder (a run nertune trained) tags every CoNLL-2003 test sentence by `predict_word_logits`
   in its own windows (context and casing as the model has them), the variants alternated in one process.
The "off" variant swaps `only_scored` for a context that does nothing where the code calls it. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, cpu_line, git_sha, write_report

RECIPES = {"seed": {}, "minilm-context-crf-8ep": {"epochs": 1}}


def _off() -> None:
    import nertune.model.word_scores as word_scores  # noqa: PLC0415
    import nertune.training.step as step  # noqa: PLC0415

    def everywhere(model, positions, device="cpu"):
        return contextlib.nullcontext()

    step.only_scored = word_scores.only_scored = everywhere


def child(recipe: str, variant: str, sentences: int) -> None:
    from nertune.training.loop import train_run  # noqa: PLC0415
    from nertune.training.recipe import load_recipe  # noqa: PLC0415

    if variant == "off":
        _off()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"max_train_sentences": sentences, "max_eval_sentences": 500, "output_dir": f"{tmp}/run", **RECIPES[recipe]}
        metrics = train_run(load_recipe(recipe, overrides), progress=False)
    print(json.dumps({"seconds": metrics["train_seconds"], "f1": metrics["validation"]["f1"]}))


def training(rounds: int, sentences: int) -> list[str]:
    lines = [f"## 1. Training, first {sentences} train sentences, one epoch, each run its own process"]
    for recipe in RECIPES:
        got = {"on": [], "off": []}
        for round_ in range(rounds):
            for variant in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                args = [sys.executable, "-m", "benchmarks.train.scored_rows", "--child", recipe, variant, str(sentences)]
                out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=True)
                got[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(recipe, variant, got[variant][-1], flush=True)
        for variant in ("off", "on"):
            seconds = statistics.median(r["seconds"] for r in got[variant])
            times = " ".join(f"{r['seconds']:.1f}" for r in got[variant])
            f1 = " ".join(f"{r['f1']:.4f}" for r in got[variant])
            rate = f"median {seconds:.1f} s = {sentences / seconds:.1f} sentences/s"
            lines.append(f"{recipe} {variant}: {times} s in the loop; {rate}; validation F1 {f1}")
        ratio = statistics.median(r["seconds"] for r in got["off"]) / statistics.median(r["seconds"] for r in got["on"])
        lines.append(f"{recipe}: on is {ratio:.3f}x off by the medians")
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
                word_scores.only_scored = shipped if variant == "on" else (lambda *a, **k: contextlib.nullcontext())
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
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=800)
    parser.add_argument("--runs", nargs="*", default=[])
    parser.add_argument("--name", default="minilm")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    lines = [f"# scored_rows: code {git_sha()}", f"# {cpu_line()}"]
    if not args.skip_training:
        lines += training(args.rounds, args.sentences)
    if args.runs:
        lines += tagging(args.runs, args.rounds)
    print("\n".join(lines))
    write_report(__file__, f"scored_rows-{args.name}", lines)


if __name__ == "__main__":
    main()
