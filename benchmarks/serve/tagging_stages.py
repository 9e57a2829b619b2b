"""Where the Tagger's time goes, stage by stage, and word splitting with and without NLTK's time limit (issue 26).

    python -m benchmarks.serve.tagging_stages MODEL_DIR [--rounds 5] [--name NAME]
        -> benchmarks/serve/results/tagging_stages-NAME-<precision>cpu.txt

MODEL_DIR: a run folder (the Tagger loads it as `Tagger.load` does: bf16 where the CPU has it) or an `nertune export`.
1. `Tagger.tag_batch` over every CoNLL-2003 test sentence (one text each, as tag_speed.py tags them), --rounds times,
   after a warm-up. Each stage's wall time, by wrapping what tag/tagger.py calls: word splitting
   (`sentence_words`), windows (`build_windows`; of it, the tokenizer's `encode_words`), the passes with the placing
   of their scores (`predict_word_logits`), `decode`, and the rest (word probabilities, entities).
2. Word splitting of the same texts, alternated: nertune's Treebank tokenizer (NLTK's patterns without its per-call
   time limit, data/words.py) against NLTK's tokenizer as shipped, 3 × --rounds rounds each; the words must be the same.
Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import time

import nertune.model.word_scores as word_scores
import nertune.tag.tagger as tagger_module
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import test_texts
from nertune.data import words

STAGES = {  # (module, function name) -> the stage it is
    (tagger_module, "sentence_words"): "word splitting",
    (tagger_module, "build_windows"): "windows",
    (word_scores, "encode_words"): "  of which tokenizing",
    (tagger_module, "predict_word_logits"): "passes + placing scores",
    (tagger_module, "decode"): "decode",
}


@contextlib.contextmanager
def stage_clocks(seconds: dict):
    """Each STAGES function wrapped to add its wall time to seconds[stage]; the originals come back after."""
    originals = {key: getattr(*key) for key in STAGES}

    def clocked(function, stage):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - began

        return wrapper

    for (module, name), stage in STAGES.items():
        setattr(module, name, clocked(originals[(module, name)], stage))
    try:
        yield
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)


def split_all(texts: list[str]) -> list:
    return [words.sentence_words(text) for text in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--name", default="int8")
    args = parser.parse_args()

    _, texts = test_texts()
    tagger = tagger_module.Tagger.load(args.model_dir)
    tagger.tag_batch(texts[:300])
    lines = [
        f"# tagging_stages: {len(texts)} CoNLL-2003 test texts, {args.model_dir}, code {git_sha()}",
        f"# {cpu_line()}",
        "## 1. Tagger.tag_batch, wall seconds per stage (each round)",
    ]
    totals, per_stage = [], collections.defaultdict(list)
    for _ in range(args.rounds):
        seconds = collections.defaultdict(float)
        with stage_clocks(seconds):
            began = time.perf_counter()
            tagger.tag_batch(texts)
            total = time.perf_counter() - began
        seconds["rest (probabilities, entities)"] = total - sum(v for k, v in seconds.items() if not k.startswith(" "))
        totals.append(total)
        for stage, value in seconds.items():
            per_stage[stage].append(value)
    median = statistics.median(totals)
    lines.append(f"total: {' '.join(f'{t:.3f}' for t in totals)} s; median {median:.3f} s = {len(texts) / median:.1f} texts/s")
    for stage, values in per_stage.items():
        middle = statistics.median(values)
        lines.append(f"{stage}: {' '.join(f'{v:.3f}' for v in values)} s; median {middle:.3f} s = {100 * middle / median:.1f}%")

    lines.append("## 2. Word splitting of the same texts, alternated (seconds)")
    shipped = words._import_privately("nltk.tokenize.destructive").NLTKWordTokenizer()
    nertunes = words._treebank()
    times = collections.defaultdict(list)
    results = {}
    original = words._treebank
    try:
        for _ in range(3 * args.rounds):  # a second a round: more rounds against a drifting VM
            for name, tokenizer in (("NLTK as shipped", shipped), ("nertune (no time limit)", nertunes)):
                words._treebank = lambda tokenizer=tokenizer: tokenizer
                began = time.perf_counter()
                results[name] = split_all(texts)
                times[name].append(time.perf_counter() - began)
    finally:
        words._treebank = original
    assert results["NLTK as shipped"] == results["nertune (no time limit)"], "the two tokenizers split differently"
    for name, values in times.items():
        lines.append(f"{name}: {' '.join(f'{v:.3f}' for v in values)}; median {statistics.median(values):.3f}, fastest {min(values):.3f}")
    ours, theirs = times["nertune (no time limit)"], times["NLTK as shipped"]
    lines.append(
        f"nertune's word splitting {statistics.median(theirs) / statistics.median(ours):.2f}x NLTK's as shipped by the medians, "
        f"{min(theirs) / min(ours):.2f}x by the fastest rounds; the same words"
    )
    print("\n".join(lines))
    write_report(__file__, f"tagging_stages-{args.name}", lines)


if __name__ == "__main__":
    main()
