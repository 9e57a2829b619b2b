"""The noise band: mean ± standard deviation of validation and test F1 over seeds, per recipe, precision and CPU.

    .venv/bin/python -m benchmarks.train.noise_band        -> benchmarks/train/results/noise_band.json + a markdown table

Reads every run in benchmarks/train/results/ (a recipe_run.sh / seeds.sh metrics.json) and groups the runs that differ
only in their seed (and in run mechanics: output folder, checkpoint cadence). Runs that did not finish have no
metrics.json, so they are never rows. A run trained on train + validation has no validation score: its group's
`validation_f1` is null and only its test F1 is banded.
"""

from __future__ import annotations

import json
import statistics

from benchmarks.common import results_dir, write_result
from nertune.training.recipe import Recipe

RESULTS = results_dir(__file__)
# Fields that do not change what a run learns; `mixed_precision` is replaced by the precision the run really used.
IGNORED = ("seed", "output_dir", "save_every_steps", "keep_checkpoints", "mixed_precision")


def runs() -> list[dict]:
    found = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            metrics = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(metrics, dict) and isinstance(metrics.get("recipe"), dict) and "test" in metrics:
            found.append({"file": path.name, **metrics})
    return found


def group_key(run: dict) -> str:
    # a field added to nertune after a run was made: that run used its default
    defaults = {name: field.default for name, field in Recipe.model_fields.items()}
    recipe = {k: v for k, v in sorted({**defaults, **run["recipe"]}.items()) if k not in IGNORED}
    cpu = run.get("machine", {}).get("cpu", {})
    return json.dumps(
        {
            "recipe": recipe,
            "precision": run.get("precision"),
            "cpu": cpu.get("model", "unknown"),
            "bf16_cpu": bool(cpu.get("flags", {}).get("avx512_bf16") or cpu.get("flags", {}).get("amx_bf16")),
        },
        sort_keys=True,
    )


def band(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None, "values": values}


def main() -> None:
    groups: dict[str, list[dict]] = {}
    for run in runs():
        groups.setdefault(group_key(run), []).append(run)
    rows = []
    for key, members in groups.items():
        members.sort(key=lambda r: r["recipe"]["seed"])
        seeds = [r["recipe"]["seed"] for r in members]
        if len(set(seeds)) < 2:
            continue  # one seed is a row of its own table, not a band
        rows.append(
            {
                **json.loads(key),
                "seeds": seeds,
                "files": [r["file"] for r in members],
                "validation_f1": band([r["validation"]["f1"] for r in members]) if all("validation" in r for r in members) else None,
                "test_f1": band([r["test"]["f1"] for r in members]),
            }
        )
    write_result(RESULTS / "noise_band.json", rows)
    print("| recipe (lr / casing / context / CRF) | precision | CPU | seeds | validation F1 | test F1 |\n|---|---|---|---|---|---|")
    for row in rows:
        recipe = row["recipe"]
        name = f"{recipe['learning_rate']:g} / {recipe['casing']} / {recipe['context_pieces']} / {recipe['crf']}"
        cell = lambda b: f"{b['mean']:.4f} ± {b['sd']:.4f}" if b else "—"  # noqa: E731
        print(
            f"| {name} | {row['precision']} | {'bf16 CPU' if row['bf16_cpu'] else 'AVX2 CPU'} | {', '.join(map(str, row['seeds']))} "
            f"| {cell(row['validation_f1'])} | {cell(row['test_f1'])} |"
        )


if __name__ == "__main__":
    main()
