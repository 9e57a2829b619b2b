"""Where the Tagger's time goes on this CPU (issue 26), behind BENCHMARKS.md's tagging notes.

    python -m benchmarks.serve.tagger_costs RUN_DIR INT8_EXPORT_DIR > benchmarks/serve/results/tagger_costs-bf16cpu.txt

1. PyTorch throughput over the first 1,000 test sentences: fp32 weights; fp32 weights under bf16 autocast; bf16
   weights (what `Tagger.load` does on a CPU with bf16). Three alternated rounds, each the median.
2. int8 export, one text a call (200 test sentences after a warm-up): p50 / p99, and tag_batch throughput over all the
   sentences, with ONNX Runtime's intra-op threads spinning (its default), not spinning (nertune's session), and
   spinning within a run but stopped when it returns (`session.force_spinning_stop`).
3. cProfile of the int8 Tagger's `tag_batch` over 1,000 texts: the share of `session.run`, of word splitting
   (data/words.py) and of tokenization.
Time it on a quiet machine.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import time

import torch
import transformers

from benchmarks.common import cpu_line
from benchmarks.serve.tag_speed import test_texts
from nertune.model.onnx_runtime import session
from nertune.tag.tagger import Tagger


def per_second(call, texts, rounds: int = 3) -> list[float]:
    out = []
    for _ in range(rounds):
        began = time.perf_counter()
        call(texts)
        out.append(len(texts) / (time.perf_counter() - began))
    return out


def autocast_tag(tagger):
    def call(texts):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return tagger.tag_batch(texts)

    return call


def latency_ms(tagger, texts, warm: int = 20) -> tuple[float, float]:
    """p50 and p99 ms of one text a call, after `warm` untimed calls."""
    for text in texts[:warm]:
        tagger(text)
    times = []
    for text in texts:
        began = time.perf_counter()
        tagger(text)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


SPINNING = {  # ONNX Runtime's intra-op threads: (allow_spinning, force_spinning_stop)
    "spinning (ONNX Runtime's default)": ("1", "0"),
    "not spinning": ("0", "0"),
    "spinning within a run only": ("1", "1"),
}


def spinning_session(tagger, mode: str) -> None:
    """Replace the export's sessions with nertune's (same layout) whose intra-op threads spin as `mode` (a SPINNING key) says."""
    allow, stop = SPINNING[mode]
    config = {"session.intra_op.allow_spinning": allow, "session.force_spinning_stop": stop}
    model = tagger.model
    each = model.session.get_session_options().intra_op_num_threads
    model.run_on([session(model.session._model_path, each, config) for _ in model.sessions])


def main() -> None:
    run_dir, export_dir = sys.argv[1:3]
    transformers.logging.set_verbosity_error()
    _, texts = test_texts(int(sys.argv[3]) if len(sys.argv) > 3 else 1000)
    print(f"{cpu_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    fp32 = Tagger.load(run_dir, device="cpu", precision="fp32")
    bf16 = Tagger.load(run_dir, device="cpu", precision="bf16")
    bf16.max_tokens = fp32.max_tokens  # the same passes: only the dtype differs
    systems = {"fp32 weights": fp32.tag_batch, "fp32 weights, bf16 autocast": autocast_tag(fp32), "bf16 weights": bf16.tag_batch}
    for call in systems.values():
        call(texts[:32])
    rates: dict = {name: [] for name in systems}
    for _ in range(3):
        for name, call in systems.items():
            rates[name] += per_second(call, texts, rounds=1)
    print(f"\n1. PyTorch Tagger, {len(texts)} test sentences, {fp32.max_tokens} tokens a pass, 3 alternated rounds (median):")
    for name, values in rates.items():
        print(f"   {name:30s} {statistics.median(values):7.1f} sentences/s  {[round(v) for v in values]}")

    int8 = Tagger.load(export_dir)
    sample = texts[:200]
    print(f"\n2. int8 export ({int8.precision}), one text a call ({len(sample)} sentences), and all {len(texts)} in one")
    print("   tag_batch (3 alternated rounds, median), by what its intra-op threads do:")
    batch_rates: dict = {mode: [] for mode in SPINNING}
    for _ in range(3):
        for mode in SPINNING:
            spinning_session(int8, mode)
            int8.tag_batch(texts[:32])
            batch_rates[mode] += per_second(int8.tag_batch, texts, rounds=1)
    for mode in SPINNING:
        spinning_session(int8, mode)
        p50, p99 = latency_ms(int8, sample)
        print(f"   {mode:35s} p50 {p50:5.2f} ms, p99 {p99:5.2f} ms; {statistics.median(batch_rates[mode]):6.1f} sentences/s")
    spinning_session(int8, "not spinning")  # nertune's session, for the profile

    int8.tag_batch(texts[:32])
    profile = cProfile.Profile()
    profile.enable()
    int8.tag_batch(texts)
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = max(t for (_, _, name), (_, _, _, t, _) in stats.items() if name == "tag_batch")

    def share(match) -> float:
        return max((t for key, (_, _, _, t, _) in stats.items() if match(key)), default=0.0) / total

    print(f"\n3. cProfile of the int8 Tagger's tag_batch over {len(texts)} texts ({total:.2f} s):")
    print(f"   session.run         {100 * share(lambda k: 'onnxruntime' in k[2] and k[2].rstrip('>').endswith('.run')):5.1f}%")
    print(f"   word splitting      {100 * share(lambda k: k[0].endswith('data/words.py') and k[2] == 'sentence_words'):5.1f}%")
    print(f"   tokenization        {100 * share(lambda k: k[0].endswith('data/features.py') and k[2] == 'encode_words'):5.1f}%")


if __name__ == "__main__":
    main()
