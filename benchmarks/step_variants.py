"""A/B of nertune training-loop variants on the first 1,600 CoNLL train sentences, each in its own process.

full-table: the whole word-embedding table in AdamW (train_used_rows_only switched off); used-rows: the
default; random-N: random step composition, each step cut into length-sorted passes of <= N tokens.
BENCHMARKS.md (training speed) quotes the recorded output, benchmarks/results/step_variants.txt:

    .venv/bin/python benchmarks/step_variants.py used-rows,full-table,random-256,full-table,used-rows,random-128
"""
import json, subprocess, sys, tempfile
VARIANTS = {
    "full-table": ({}, False),
    "used-rows": ({}, True),
    "random-256": ({"group_by_length": False, "max_tokens_per_forward": 256}, True),
    "random-128": ({"group_by_length": False, "max_tokens_per_forward": 128}, True),
}
def child(name):
    overrides, rows = VARIANTS[name]
    import nertune.train.loop as L
    if not rows:
        L.train_used_rows_only = lambda *a, **k: False
    from nertune.train.recipe import load_recipe
    with tempfile.TemporaryDirectory() as tmp:
        r = load_recipe("seed", {"max_train_sentences": 1600, "max_eval_sentences": 500, "epochs": 1, "output_dir": tmp + "/r",
                                 "accumulation": "token", **overrides})
        m = L.train_run(r, progress=False)
    print(json.dumps({"variant": name, "sps": 1600 / m["train_seconds"], "f1": m["validation"]["f1"]}))
if len(sys.argv) > 2:
    child(sys.argv[2]); sys.exit()
order = sys.argv[1].split(",")
for name in order:
    out = subprocess.run([sys.executable, __file__, "", name], capture_output=True, text=True)
    print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-2000:], flush=True)
