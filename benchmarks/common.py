"""What the benchmark scripts share: where their results go and the facts a result file records.

Every script runs from the repository root as a module (`python -m benchmarks.train.train_speed ...`)
and writes into its own sub-package's results/ folder (`results_dir(__file__)`). Importing this module
costs nothing: torch and transformers load only when `versions()` is called.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository root


def results_dir(script: str | os.PathLike) -> Path:
    """The results/ folder of a benchmark script's sub-package: pass the script's `__file__`."""
    return Path(script).resolve().parent / "results"


def write_result(path: str | os.PathLike, data: Any) -> Path:
    """A result file as JSON (indent 2, a final newline), written whole or not at all; its folder is made."""
    from nertune.atomic import write_json  # noqa: PLC0415  (nertune on the path only when a script runs)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return path


def git_sha() -> str:
    """HEAD's commit, with -dirty when tracked files have changes; "unknown" outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions(*extra: str) -> dict:
    """nertune, Python and the training stack's versions (as metrics.json records them), plus each `extra` package's."""
    names = ("torch", "transformers", "tokenizers", "accelerate", *extra)
    from nertune import __version__  # noqa: PLC0415  (nertune on the path only when a script runs)

    return {
        "nertune": __version__,
        "python": platform.python_version(),
        **{name: importlib.import_module(name).__version__ for name in names},
    }


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        return next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.processor()


def cpu_line() -> str:
    """ "MODEL; flags F1 F2 ...": the CPU and the recorded flags it has (nertune/machine.py), for a report's first line."""
    from nertune.machine import cpu_description  # noqa: PLC0415  (importing nertune sets oneDNN's kernel cache: not for every script)

    cpu = cpu_description()
    return f"{cpu['model']}; flags {' '.join(flag for flag, present in cpu['flags'].items() if present)}"


def cpu_kind() -> str:
    """ "bf16" on a CPU with AVX-512 BF16 or AMX (nertune picks bf16 there), else "avx2" (fp32): the suffix
    (`-bf16cpu`, `-avx2cpu`) of a result named for the kind of CPU that made it, as common.sh names it."""
    from nertune.machine import BF16_FLAGS, cpu_description  # noqa: PLC0415  (as in cpu_line)

    flags = cpu_description()["flags"]
    return "bf16" if any(flags[flag] for flag in BF16_FLAGS) else "avx2"


def write_report(script: str | os.PathLike, stem: str, lines: list[str]) -> Path:
    """A text report, `lines` one a line, as results/<stem>-<cpu kind>cpu.txt beside `script` (its `__file__`)."""
    out = results_dir(script) / f"{stem}-{cpu_kind()}cpu.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"-> {out}")
    return out


def cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
