"""Does length grouping slow early learning? nertune on the first 1,600 CoNLL-2003 train sentences,
1 epoch (100 steps) at the seed recipe, validation F1 on 500 sentences, with random steps and with
another seed (the grouped default is in benchmarks/train/results/train_speed-literal-1600x1.json: 0.0135; the literal
Trainer 0.1929).

    .venv/bin/python -m benchmarks.quality.grouping_early_f1 > benchmarks/quality/results/grouping_early_f1.txt   # one line a run
"""

import tempfile

from nertune.training.loop import train_run
from nertune.training.recipe import load_recipe

for overrides in (
    {"group_by_length": False, "pack": False},
    {"seed": 43, "group_by_length": True, "pack": False},
):  # explicit: the defaults changed since
    with tempfile.TemporaryDirectory() as d:
        r = load_recipe("seed", {"max_train_sentences": 1600, "max_eval_sentences": 500, "epochs": 1, "output_dir": d + "/r", **overrides})
        m = train_run(r, progress=False)
        print(overrides, "validation F1", round(m["validation"]["f1"], 4), "sent/s", round(1600 / m["train_seconds"], 1), flush=True)
