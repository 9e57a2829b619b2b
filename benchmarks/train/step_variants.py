"""A/B of nertune training-loop variants on the first 1,600 CoNLL train sentences, each in its own process.

full-table: the whole word-embedding table in AdamW (train_used_rows_only switched off); used-rows: the
default until packing (length-grouped steps, one window a row); random-N: random step composition,
each step cut into length-sorted passes of <= N tokens;
random-packed: random steps, each step's windows packed into shared rows (data/packing.py) in one pass;
grouped-packed: length-grouped steps, packed; random: random steps padded to their longest window.
BENCHMARKS.md (training speed) quotes the recorded output, benchmarks/train/results/step_variants.txt:

    .venv/bin/python -m benchmarks.train.step_variants used-rows,full-table,random-256,full-table,used-rows,random-128
"""

import json
import subprocess
import sys
import tempfile

import nertune.training.loop as L
import nertune.training.setup as S  # where the loop's setup looks train_used_rows_only up
from benchmarks.common import ROOT
from nertune.training.recipe import load_recipe

VARIANTS = {
    "full-table": ({"group_by_length": True, "pack": False}, False),
    "used-rows": ({"group_by_length": True, "pack": False}, True),
    "random-256": ({"group_by_length": False, "pack": False, "max_tokens_per_forward": 256}, True),
    "random-128": ({"group_by_length": False, "pack": False, "max_tokens_per_forward": 128}, True),
    "random-packed": ({"group_by_length": False, "pack": True}, True),
    "grouped-packed": ({"group_by_length": True, "pack": True}, True),
    "random": ({"group_by_length": False, "pack": False}, True),
}


def child(name):
    overrides, rows = VARIANTS[name]
    if not rows:
        S.train_used_rows_only = lambda *a, **k: False
    with tempfile.TemporaryDirectory() as tmp:
        r = load_recipe(
            "seed",
            {
                "max_train_sentences": 1600,
                "max_eval_sentences": 500,
                "epochs": 1,
                "output_dir": tmp + "/r",
                "accumulation": "token",
                **overrides,
            },
        )
        m = L.train_run(r, progress=False)
    print(json.dumps({"variant": name, "sps": 1600 / m["train_seconds"], "f1": m["validation"]["f1"]}))


if len(sys.argv) > 2:
    child(sys.argv[2])
    sys.exit()
order = sys.argv[1].split(",")
for name in order:
    out = subprocess.run([sys.executable, "-m", "benchmarks.train.step_variants", "", name], capture_output=True, text=True, cwd=ROOT)
    print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-2000:], flush=True)
