"""`nertune evaluate RUN` / `compare RUN RUN` with no --data or --file: the data the run itself was tested on.

The run is trained through the CLI on real CoNLL-2003 sentences whose entity types are renamed
(PER -> PERSON …), so the embedded corpus and the run's own files cannot be mistaken for each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from nertune.data.conll import read_conll
from tests.conftest import run_cli, shared_dir

RENAMED = {"PER": "PERSON", "ORG": "ORGANISATION", "LOC": "PLACE", "MISC": "OTHER"}
SIZES = {"train": 32, "validation": 16, "test": 12}  # the test file's 12 sentences tell it from the others


def _write_renamed(source: Path, target: Path, count: int) -> None:
    sentences = read_conll(source).sentences[:count]
    target.write_text(
        "\n".join("".join(f"{w} {t if t == 'O' else t[:2] + RENAMED[t[2:]]}\n" for w, t in zip(s.words, s.tags)) for s in sentences),
        encoding="utf-8",
    )


@pytest.fixture(scope="session")
def renamed_run(tmp_path_factory, conll_files) -> dict:
    """A run trained on three renamed CoNLL files: {'run': dir, 'train'/'validation'/'test': file}."""

    def build(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for split, count in SIZES.items():
            _write_renamed(conll_files[split], root / f"{split}.txt", count)
        result = run_cli(
            "train",
            "--train",
            str(root / "train.txt"),
            "--validation",
            str(root / "validation.txt"),
            "--test",
            str(root / "test.txt"),
            "--max-train-sentences",
            "32",
            "--epochs",
            "1",
            "--output-dir",
            str(root / "run"),
            "--no-progress",
            "--sample",
            "",
        )
        assert result.returncode == 0, result.stderr

    root = shared_dir(tmp_path_factory, "renamed-run", build)
    return {"run": root / "run", **{split: root / f"{split}.txt" for split in SIZES}}


def _evaluate(*args: str) -> tuple[dict, str]:
    result = run_cli("evaluate", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def _run_copy(run: Path, folder: Path, **recipe_fields) -> Path:
    """The run's files hard-linked into `folder` (a model folder's files must be its own: no symbolic links
    out of it), with recipe.yaml's data fields changed."""
    folder.mkdir()
    for item in run.iterdir():
        if item.name != "recipe.yaml" and item.is_file():
            os.link(item, folder / item.name)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe.update(recipe_fields)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def test_evaluate_with_no_data_scores_the_runs_test_file_and_says_so(renamed_run):
    test_file = str(renamed_run["test"])
    report, stderr = _evaluate(str(renamed_run["run"]))
    assert f"evaluating on the run's test file {test_file}" in stderr
    assert report["data"] == test_file and report["split"] == "test"
    assert report["sentences"] == SIZES["test"]
    assert report["words"] == sum(len(s.words) for s in read_conll(test_file).sentences)
    assert set(report["per_type"]) <= set(RENAMED.values()) and report["gold_entities"] > 0
    # The same numbers as naming the file, which says nothing about where the data came from.
    named, named_stderr = _evaluate(str(renamed_run["run"]), "--file", test_file)
    assert "evaluating on" not in named_stderr
    keys = ("precision", "recall", "f1", "accuracy", "loss", "words", "gold_entities", "pred_entities", "correct_entities", "per_type")
    assert {k: report[k] for k in keys} == {k: named[k] for k in keys}


def test_evaluate_with_no_test_file_recorded_uses_the_validation_file(renamed_run, tmp_path):
    run = _run_copy(renamed_run["run"], tmp_path / "run", test=None)
    report, stderr = _evaluate(str(run))
    assert f"evaluating on the run's validation file {renamed_run['validation']}" in stderr
    assert report["data"] == str(renamed_run["validation"]) and report["sentences"] == SIZES["validation"]


def test_evaluate_on_another_label_set_is_one_line_naming_both_sets(renamed_run):
    result = run_cli("evaluate", str(renamed_run["run"]), "--data", "conll2003")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "model labels {ORGANISATION, OTHER, PERSON, PLACE} vs data labels {LOC, MISC, ORG, PER}" in result.stderr
    assert "— fix: " in result.stderr and "Traceback" not in result.stderr


def test_a_run_on_the_embedded_corpus_defaults_to_its_test_split(renamed_run, tmp_path, conll_files):
    """A run whose recipe names conll2003 and no files: the embedded test split (here refused: other labels)."""
    run = _run_copy(renamed_run["run"], tmp_path / "run", train=None, validation=None, test=None, data="conll2003")
    result = run_cli("evaluate", str(run))
    assert result.returncode == 2
    assert "evaluating on the embedded conll2003 test split, the run's data" in result.stderr
    assert f"error: {conll_files['test']}: model labels" in result.stderr


def test_a_recorded_file_that_is_gone_is_one_line_naming_it(renamed_run, tmp_path):
    gone = tmp_path / "moved" / "test.txt"
    run = _run_copy(renamed_run["run"], tmp_path / "run", test=str(gone))
    result = run_cli("evaluate", str(run))
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {gone}: the run's test file")
    assert "not found" in result.stderr and "--file FILE" in result.stderr


def test_a_recorded_file_changed_since_training_is_noticed(renamed_run, tmp_path):
    changed = tmp_path / "test.txt"
    kept = read_conll(renamed_run["test"]).sentences[:-2]  # two sentences fewer: another md5
    changed.write_text("\n".join("".join(f"{w} {t}\n" for w, t in zip(s.words, s.tags)) for s in kept), encoding="utf-8")
    run = _run_copy(renamed_run["run"], tmp_path / "run", test=str(changed))
    report, stderr = _evaluate(str(run))
    assert f"{changed} has changed since the run was trained" in stderr
    assert report["sentences"] == SIZES["test"] - 2
    unchanged, unchanged_stderr = _evaluate(str(renamed_run["run"]), "--max-sentences", "1")
    assert "has changed" not in unchanged_stderr


def test_compare_two_runs_with_no_data_uses_their_test_file(renamed_run):
    run = str(renamed_run["run"])
    result = run_cli("compare", run, run, "--json", "--resamples", "100")
    assert result.returncode == 0, result.stderr
    assert f"evaluating on the run's test file {renamed_run['test']}" in result.stderr
    data = json.loads(result.stdout)
    assert data["sentences"] == SIZES["test"] and data["a"]["f1"] == data["b"]["f1"]
    evaluated, _ = _evaluate(run)
    assert data["a"]["f1"] == evaluated["f1"]


def test_compare_runs_tested_on_different_files_is_refused(renamed_run, tmp_path):
    other = _run_copy(renamed_run["run"], tmp_path / "run", test=None)  # falls back to the validation file
    result = run_cli("compare", str(renamed_run["run"]), str(other))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"A was tested on {renamed_run['test']}, B on {renamed_run['validation']}: not the same data" in result.stderr
