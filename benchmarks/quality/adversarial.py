"""The adversarial pass as one command: every hostile case the suite holds, run and tallied by category.

    .venv/bin/python -m benchmarks.quality.adversarial [--examples N]     -> benchmarks/quality/results/adversarial.json + a table

Each case is a test (a parametrized test is one case per parameter); the random cases (hypothesis) run
`--examples` inputs each (default 2,000). A case "held" when its test passed. The table goes to
BENCHMARKS.md ("Adversarial pass"); a failed case names its test, so the next pass starts from it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

from benchmarks.common import ROOT, results_dir, write_result

# category: the tests that hold its cases (file, or file::name-prefix)
CATEGORIES = {
    "data files: line ends, columns, encodings, malformed lines": [
        "tests/cli/test_hardening.py::test_every_kind",
        "tests/cli/test_hardening.py::test_crlf",
        "tests/cli/test_hardening.py::test_cr_mixed",
        "tests/cli/test_hardening.py::test_a_changing",
        "tests/unit/test_reader.py",
    ],
    "random and mutated input (hypothesis)": ["tests/unit/test_fuzz.py"],
    "recipes": ["tests/cli/test_recipe.py", "tests/cli/test_hardening.py::test_a_huge_recipe"],
    "Ctrl-C and SIGTERM at any moment": ["tests/cli/test_hardening.py::test_a_signal", "tests/cli/test_resume.py::test_sigterm"],
    "untrusted model folders and exports": [
        "tests/cli/test_hardening.py::test_a_manifest",
        "tests/cli/test_hardening.py::test_links",
        "tests/cli/test_hardening.py::test_broken",
        "tests/cli/test_hardening.py::test_an_export",
        "tests/cli/test_manifest.py",
        "tests/cli/test_model_resolution.py",
    ],
    "checkpoints: kills, damage, malformed state": [
        "tests/cli/test_hardening.py::test_a_checkpoint",
        "tests/cli/test_hardening.py::test_flipped",
        "tests/cli/test_hardening.py::test_malformed",
        "tests/cli/test_hardening.py::test_a_stale",
        "tests/cli/test_resume.py",
    ],
    "memory on hostile input": ["tests/cli/test_hardening.py::test_a_50_mb"],
    "server: malformed requests, limits, disclosure": ["tests/cli/test_serve.py"],
    "server: idle, trickling and too many connections; large requests": ["tests/model/test_serve_connections.py"],
    "file modes": ["tests/cli/test_hardening.py::test_saved_files"],
}


def category_of(nodeid: str) -> str | None:
    best = None
    for category, prefixes in CATEGORIES.items():
        for prefix in prefixes:
            if nodeid.startswith(prefix) and (best is None or len(prefix) > best[1]):
                best = (category, len(prefix))
    return best[0] if best else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="hypothesis examples per random case")
    args = parser.parse_args()
    files = sorted({prefix.split("::")[0] for prefixes in CATEGORIES.values() for prefix in prefixes})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        env = {**os.environ, "NERTUNE_FUZZ_EXAMPLES": str(args.examples)}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-n",
                "2",
                "--dist",
                "loadfile",
                f"--junitxml={report}",
                *files,
            ],
            cwd=ROOT,
            env=env,
        )
        tree = ElementTree.parse(report)
    held, failed, names = Counter(), Counter(), {}
    for case in tree.iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        nodeid = f"{path}::{case.get('name')}"
        category = category_of(nodeid)
        if category is None or case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed[category] += 1
            names.setdefault(category, []).append(nodeid)
        else:
            held[category] += 1
    rows = [
        {"category": c, "cases": held[c] + failed[c], "held": held[c], "failed": failed[c], "failed_cases": names.get(c, [])}
        for c in CATEGORIES
    ]
    result = {
        "examples_per_random_case": args.examples,
        "rows": rows,
        "total": {"cases": sum(r["cases"] for r in rows), "held": sum(held.values()), "failed": sum(failed.values())},
    }
    write_result(results_dir(__file__) / "adversarial.json", result)
    print("| category | cases | held | failed |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['category']} | {row['cases']} | {row['held']} | {row['failed']} |")
    total = result["total"]
    print(f"| all | {total['cases']} | {total['held']} | {total['failed']} |")


if __name__ == "__main__":
    main()
