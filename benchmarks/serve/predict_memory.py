"""Memory of `nertune predict` on text files of growing size: it streams, so the peak stays flat.

Each file is the CoNLL-2003 test sentences as text, one a line (about 70 bytes), repeated to the
size asked; predict reads and tags 256 lines at a time. `nertune predict MODEL FILE` runs as a user would (output to /dev/null) while this
script samples, every 0.2 s, the process's resident memory and how far it has read the file
(its read position, from /proc/PID/fdinfo). A process that held the whole file would grow with
it; a streaming one reaches its peak in the first chunk of lines and stays there.

    .venv/bin/python -m benchmarks.serve.predict_memory MODEL_DIR [MODEL_DIR ...] [--mb 0.1 1] \
  -> benchmarks/serve/results/predict_memory.json

`--no-line-breaks` writes each file as a single line (the sentences joined by spaces): predict
reads and tags it in pieces of at most 100,000 characters (--max-line-chars), so the peak should
not grow with the file either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import git_sha, results_dir, versions, write_result
from nertune.console import console
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files


def sentence_lines() -> list[str]:
    return [" ".join(sentence.words) for sentence in read_conll(conll2003_files()["test"]).sentences]


def write_file(path: Path, megabytes: float, lines: list[str], end: str = "\n") -> int:
    target, written = int(megabytes * 1_000_000), 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            for line in lines:
                handle.write(line + end)
                written += len(line.encode()) + 1
                if written >= target:
                    break
    return written


def status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def read_position(pid: int, path: Path) -> int | None:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    return int(info.readline().split()[1])
    except (OSError, ValueError):
        return None
    return None


def measure(model_dir: str, path: Path, size: int) -> dict:
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nertune", "predict", model_dir, str(path), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples, peak = [], 0
    while process.poll() is None:
        rss, hwm, position = status_kb(process.pid, "VmRSS"), status_kb(process.pid, "VmHWM"), read_position(process.pid, path)
        peak = max(peak, hwm or 0)
        if rss is not None and position is not None:
            samples.append((round(position / size, 4), round(rss / 1024, 1)))
        time.sleep(0.2)
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"nertune predict failed ({process.returncode}): {stderr.strip()}")
    # Largest resident memory while the first half of the file was being tagged vs the second half
    # (samples at position 0 are the model loading).
    early = [rss for fraction, rss in samples if 0 < fraction <= 0.5]
    late = [rss for fraction, rss in samples if fraction > 0.5]
    return {
        "bytes": size,
        "lines": sum(1 for _ in open(path, "rb")),
        "seconds": round(time.perf_counter() - began, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_mb_max_first_half": max(early) if early else None,
        "rss_mb_max_second_half": max(late) if late else None,
        "timeline": samples[:: max(1, len(samples) // 60)],  # (fraction of the file read, RSS MB)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", help="PyTorch model or ONNX export directories, each measured in turn")
    parser.add_argument("--mb", type=float, nargs="+", default=[0.1, 1.0], help="file sizes in MB (10^6 bytes)")
    parser.add_argument("--no-line-breaks", action="store_true", help="each file is one line: the sentences joined by spaces")
    parser.add_argument("--out", default=str(results_dir(__file__) / "predict_memory.json"))
    args = parser.parse_args()
    lines = sentence_lines()
    results: dict = {"load_average_at_start": os.getloadavg(), "versions": versions(), "git_sha": git_sha(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="predict_memory.") as scratch:
        for megabytes in args.mb:
            path = Path(scratch) / f"{megabytes}MB.txt"
            size = write_file(path, megabytes, lines, " " if args.no_line_breaks else "\n")
            for model_dir in args.model_dirs:
                result = {
                    "model_dir": model_dir,
                    "file_mb": megabytes,
                    "line_breaks": not args.no_line_breaks,
                    **measure(model_dir, path, size),
                }
                results["runs"].append(result)
                console.print(
                    f"{model_dir}, {megabytes} MB: peak RSS {result['peak_rss_mb']} MB in {result['seconds']} s "
                    f"(first half of the file: {result['rss_mb_max_first_half']} MB; second half: {result['rss_mb_max_second_half']} MB)",
                    markup=False,
                )
    results["load_average_at_end"] = os.getloadavg()
    write_result(args.out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
