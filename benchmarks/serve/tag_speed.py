"""Tagging speed, side by side in one process: nertune's Tagger (PyTorch, ONNX Runtime fp32 and
int8) vs transformers.pipeline, on every CoNLL-2003 test sentence as raw text (words joined by spaces).

Baseline: pipeline("token-classification", aggregation_strategy="first"), same model, called the
usual way (one text a call), and with batch_size=32 for reference. Like with like: the pipeline's model
gets the dtype the Tagger picks here (`Tagger.load` precision auto: bf16 on a CPU with AVX-512 BF16 or
AMX, else fp32); both precisions of both are timed, and the CPU's model and flags are recorded.

The machine may be shared, so nothing is compared across runs: the test set is cut into --rounds
parts and each part goes through every system in turn (the order rotating), --repeats times; each
system's time on a part is its fastest pass, so a burst of load from elsewhere during one system's
turn does not count against it. Speed-ups are ratios of the summed times (and, as a check, the
median over parts of the per-part ratio). Also measured:

  - same entities as the pipeline on the sentences where neither side splits or merges words
    differently from the gold words (Tagger unconstrained = first-subword argmax, like the pipeline);
  - single-text latency (p50 / p99) of each system, one call per text, each system on its own;
  - test F1 (conlleval, unconstrained) of the PyTorch, ONNX fp32 and ONNX int8 models,
    via nertune.evaluate.model_scores.evaluate_sentences;
  - the Tagger's padded-tokens-per-forward budget (max_tokens) on the first --sweep-sentences;
  - peak resident memory of loading + tagging the whole test set, each backend in a fresh process.

    .venv/bin/python -m benchmarks.serve.tag_speed runs/seed-minilm-cpu [--onnx-dir DIR]   -> benchmarks/serve/results/tag_speed.json

The ONNX models are exported into --onnx-dir (a temporary directory by default) with
nertune.export.onnx.export_onnx unless they are there already.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer

from benchmarks.common import ROOT, cpu_name, git_sha, results_dir, versions, write_result
from nertune.console import console
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.words import split_words
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.export.onnx import export_onnx, is_export
from nertune.machine import cpu_description
from nertune.model.load import for_inference, load_tokenizer, load_trained
from nertune.model.onnx_runtime import OnnxTokenClassifier
from nertune.tag.tagger import Tagger

MAX_TOKENS_SWEEP = (512, 1024, 2048, 4096, 16384)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) starts afresh at exec."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_texts(limit: int | None = None):
    sentences = read_conll(conll2003_files()["test"]).sentences[:limit]
    return sentences, [" ".join(s.words) for s in sentences]


def interleaved(systems: dict, texts: list[str], rounds: int, repeats: int = 1) -> tuple[dict, dict]:
    """Seconds of each system on each part of the texts (the fastest of `repeats` passes), and each
    system's outputs in text order (from the first pass)."""
    size = -(-len(texts) // rounds)
    parts = [texts[start : start + size] for start in range(0, len(texts), size)]
    seconds: dict = {name: [float("inf")] * len(parts) for name in systems}
    outputs: dict = {name: [] for name in systems}
    names = list(systems)
    for repeat in range(repeats):
        for r, part in enumerate(parts):
            turn = r + repeat * 3
            for name in names[turn % len(names) :] + names[: turn % len(names)]:  # rotate who goes first
                began = time.perf_counter()
                tagged = systems[name](part)
                seconds[name][r] = min(seconds[name][r], time.perf_counter() - began)
                if repeat == 0:
                    outputs[name].extend(tagged)
            console.print(
                f"pass {repeat + 1}/{repeats}, part {r + 1}/{len(parts)}: " + ", ".join(f"{n} {seconds[n][r]:.1f}s" for n in names),
                markup=False,
            )
    return seconds, outputs


def speeds(seconds: dict, n_texts: int, baseline: str) -> dict:
    """Sentences/s over all parts, and the speed-up two ways: of the summed times, and the median
    over parts of the per-part ratio (a burst of outside load during one system's turn on one part
    moves the first, hardly the second)."""
    out = {}
    for name, parts in seconds.items():
        out[name] = {
            "seconds": round(sum(parts), 2),
            "sentences_per_second": round(n_texts / sum(parts), 1),
            f"speedup_vs_{baseline}": round(sum(seconds[baseline]) / sum(parts), 2),
            f"median_part_speedup_vs_{baseline}": round(statistics.median(b / s for b, s in zip(seconds[baseline], parts)), 2),
            "part_seconds": [round(s, 2) for s in parts],
        }
    return out


def latencies(systems: dict, texts: list[str], passes: int = 2) -> dict:
    """One text a call, each system on its own for all texts (before ONNX Runtime's threads stopped spinning,
    a torch call right after an ORT call waited for them: 17 ms -> 40 ms measured), in two passes in opposite orders."""
    times: dict = {name: [] for name in systems}
    names = list(systems)
    for repeat in range(passes):
        for name in names if repeat % 2 == 0 else names[::-1]:
            systems[name](texts[0])  # warm this system up again after the others ran
            for text in texts:
                began = time.perf_counter()
                systems[name](text)
                times[name].append((time.perf_counter() - began) * 1000)
    return {
        name: {
            "p50_ms": round(statistics.median(t), 2),
            "p99_ms": round(percentile(t, 99), 2),
            "mean_ms": round(statistics.fmean(t), 2),
            "calls": len(t),
        }
        for name, t in times.items()
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def pipeline_agreement(model_dir: str, sentences, texts, theirs, ours) -> dict:
    """Same entities where both sides split the text into exactly the gold words."""
    pre = AutoTokenizer.from_pretrained(model_dir).backend_tokenizer.pre_tokenizer
    comparable = same = 0
    for sentence, text, a, b in zip(sentences, texts, theirs, ours):
        our_words = [w.text for w in split_words(text)]
        their_words = [w for w, _ in pre.pre_tokenize_str(text)]
        if our_words != sentence.words or [w.lower() for w in their_words] != [w.lower() for w in sentence.words]:
            continue
        comparable += 1
        same += {(e["entity_group"], e["start"], e["end"]) for e in a} == {(e["type"], e["start"], e["end"]) for e in b}
    return {"comparable_sentences": comparable, "same_entities": same}


def same_entities(a: list[list[dict]], b: list[list[dict]]) -> float:
    key = lambda es: sorted((e["type"], e["start"], e["end"]) for e in es)  # noqa: E731
    return sum(key(x) == key(y) for x, y in zip(a, b)) / len(a)


def test_f1(directories: dict, precision: str) -> dict:
    """Test F1 of each model (PyTorch in fp32, and in the Tagger's precision when that is bf16)."""
    sentences = read_conll(conll2003_files()["test"]).sentences
    out = {}
    if precision == "bf16":
        directories = {**directories, "pytorch_bf16": directories["pytorch"]}
    for name, directory in directories.items():
        model = OnnxTokenClassifier(directory) if is_export(directory) else load_trained(directory)
        if name == "pytorch_bf16":
            model = for_inference(model, torch.bfloat16)  # as Tagger.load casts it
        began = time.perf_counter()
        metrics = evaluate_sentences(model, load_tokenizer(str(directory)), sentences)["metrics"]
        out[name] = {k: metrics[k] for k in ("f1", "precision", "recall", "accuracy")} | {"seconds": round(time.perf_counter() - began, 1)}
        console.print(f"test F1 {name}: {metrics['f1']:.4f}", markup=False)
    return out


def child_memory(directory: str) -> dict:
    """Load and tag the whole test set in a fresh process; its peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve.tag_speed", "--memory-child", directory],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def memory_child(directory: str) -> None:
    _, texts = test_texts()
    tagger = Tagger.load(directory, device="cpu")
    loaded = peak_rss_mb()
    tagger.tag_batch(texts)
    print(json.dumps({"peak_rss_mb_after_load": round(loaded, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def onnx_exports(model_dir: str, onnx_dir: Path) -> dict:
    out = {}
    for name, quantize in (("onnx_fp32", None), ("onnx_int8", "int8")):
        target = onnx_dir / name
        if not is_export(target):
            export_onnx(model_dir, target, quantize)
        out[name] = str(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--onnx-dir", help="where the ONNX exports are (or are written); default: a temporary directory")
    parser.add_argument("--sentences", type=int, default=None, help="first N test sentences (default all 3,453)")
    parser.add_argument("--rounds", type=int, default=8, help="parts the texts are cut into, each timed on every system in turn")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the parts; each part's fastest pass counts")
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--sweep-sentences", type=int, default=1000)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(results_dir(__file__) / "tag_speed.json"))
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    if not args.model_dir:
        parser.error("model_dir is required")

    from transformers import pipeline  # noqa: PLC0415  (memory child: no pipeline)

    transformers.logging.set_verbosity_error()
    sentences, texts = test_texts(args.sentences)
    results: dict = {
        "sentences": len(texts),
        "words": sum(len(s.words) for s in sentences),
        "model_dir": args.model_dir,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "processor": cpu_name(),
        "cpu": cpu_description(),
        "load_average_at_start": os.getloadavg(),
        "versions": versions(),
        "git_sha": git_sha(),
    }
    scratch = tempfile.TemporaryDirectory(prefix="tag_speed.")
    exports = onnx_exports(args.model_dir, Path(args.onnx_dir or scratch.name))
    results["onnx_exports"] = {name: json.loads((Path(d) / "nertune_export.json").read_text()) for name, d in exports.items()}

    taggers = {
        "tagger": Tagger.load(args.model_dir, device="cpu"),  # precision auto
        "tagger_fp32": Tagger.load(args.model_dir, device="cpu", precision="fp32"),
        **{n: Tagger.load(d) for n, d in exports.items()},
    }
    precision = taggers["tagger"].precision
    results["tagger_precision"] = precision
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    ner = pipeline("token-classification", model=args.model_dir, aggregation_strategy="first", device="cpu", dtype=dtypes[precision])
    ner_fp32 = pipeline("token-classification", model=args.model_dir, aggregation_strategy="first", device="cpu", dtype=torch.float32)
    for tagger in taggers.values():
        tagger.tag_batch(texts[:16])  # warm-up
    ner(texts[:16])
    ner_fp32(texts[:16])

    # ---- throughput: every test sentence, interleaved -----------------------------------------
    # "pipeline" and "tagger": the precision the Tagger picked (results["tagger_precision"]); *_fp32: fp32 both.
    systems = {
        "pipeline": lambda part: [ner(t) for t in part],
        "pipeline_batch32": lambda part: ner(part, batch_size=32),
        "pipeline_fp32": lambda part: [ner_fp32(t) for t in part],
        "tagger": taggers["tagger"].tag_batch,
        "tagger_unconstrained": lambda part: taggers["tagger"].tag_batch(part, constrain=False),
        "tagger_fp32": taggers["tagger_fp32"].tag_batch,
        "onnx_fp32": taggers["onnx_fp32"].tag_batch,
        "onnx_int8": taggers["onnx_int8"].tag_batch,
    }
    seconds, outputs = interleaved(systems, texts, args.rounds, args.repeats)
    results["throughput"] = speeds(seconds, len(texts), "pipeline")
    for name, speed in results["throughput"].items():
        speed["speedup_vs_pipeline_batch32"] = round(sum(seconds["pipeline_batch32"]) / sum(seconds[name]), 2)
        speed["speedup_vs_pipeline_fp32"] = round(sum(seconds["pipeline_fp32"]) / sum(seconds[name]), 2)
        console.print(
            f"{name}: {speed['sentences_per_second']} sentences/s, {speed['speedup_vs_pipeline']}x the pipeline "
            f"(median over parts {speed['median_part_speedup_vs_pipeline']}x)",
            markup=False,
        )
    results["agreement"] = pipeline_agreement(args.model_dir, sentences, texts, outputs["pipeline"], outputs["tagger_unconstrained"])
    agreement = results["agreement"]
    for name, other in (("tagger", "tagger_fp32"), ("onnx_int8", "tagger"), ("onnx_fp32", "tagger")):
        agreement[f"sentences_same_entities_{name}_vs_{other}"] = round(same_entities(outputs[name], outputs[other]), 4)
    console.print(f"agreement: {results['agreement']}", markup=False)
    del outputs

    # ---- single-text latency -------------------------------------------------------------------
    sample = random.Random(0).sample(texts, min(args.latency_texts, len(texts)))
    results["latency"] = latencies(
        {
            "pipeline": ner,
            "tagger": taggers["tagger"],
            "tagger_fp32": taggers["tagger_fp32"],
            "onnx_fp32": taggers["onnx_fp32"],
            "onnx_int8": taggers["onnx_int8"],
        },
        sample,
    )
    console.print(f"latency: {results['latency']}", markup=False)

    # ---- the Tagger's max_tokens per forward pass ----------------------------------------------
    sweep_texts = texts[: args.sweep_sentences]
    sweep = {}
    for backend in ("tagger", "tagger_fp32", "onnx_int8"):
        for max_tokens in MAX_TOKENS_SWEEP:
            sweep[f"{backend}@{max_tokens}"] = lambda part, t=taggers[backend], m=max_tokens: _with_max_tokens(t, m, part)
    sweep_seconds, _ = interleaved(sweep, sweep_texts, 2)
    results["max_tokens_sweep"] = {
        "sentences": len(sweep_texts),
        "sentences_per_second": {name: round(len(sweep_texts) / sum(s), 1) for name, s in sweep_seconds.items()},
    }
    results["rss_mb_peak_this_process"] = round(peak_rss_mb(), 1)
    # Free the pipeline and the taggers before the accuracy and memory phases: the systems' and the sweep's
    # functions hold them too, so those go as well.
    ner = ner_fp32 = taggers = systems = sweep = None

    # ---- accuracy and memory -------------------------------------------------------------------
    results["test_f1"] = test_f1({"pytorch": args.model_dir, **exports}, precision)
    results["test_f1"]["onnx_int8_minus_pytorch_points"] = round(
        100 * (results["test_f1"]["onnx_int8"]["f1"] - results["test_f1"]["pytorch"]["f1"]), 2
    )
    results["memory"] = {name: child_memory(d) for name, d in {"tagger": args.model_dir, **exports}.items()}
    console.print(f"memory: {results['memory']}", markup=False)
    results["load_average_at_end"] = os.getloadavg()
    write_result(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("versions", "onnx_exports")}, indent=2))


def _with_max_tokens(tagger, max_tokens: int, texts: list[str]) -> list:
    saved, tagger.max_tokens = tagger.max_tokens, max_tokens
    try:
        return tagger.tag_batch(texts)
    finally:
        tagger.max_tokens = saved


if __name__ == "__main__":
    main()
