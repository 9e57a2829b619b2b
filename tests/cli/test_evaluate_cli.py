"""`nertune score`, `evaluate`, `compare` as a user runs them, and the plots of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nertune.data.conll import read_conll
from nertune.data.features import encode_words
from nertune.evaluate.conlleval_io import read_predictions
from nertune.model.load import load_tokenizer, load_trained
from nertune.model.positions import max_pieces_for
from nertune.model.word_scores import build_windows, predict_word_logits
from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLE = str(FIXTURES / "conlleval_example.txt")
PNG = b"\x89PNG\r\n\x1a\n"


# ---- score -----------------------------------------------------------------------


def test_score_json_is_the_documented_object_and_nothing_else():
    result = run_cli("score", EXAMPLE, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"precision", "recall", "f1", "accuracy", "per_type"}
    assert set(data["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    assert set(data["per_type"]["PER"]) == {"precision", "recall", "f1", "support"}
    assert data["f1"] == pytest.approx(6 / 13) and data["accuracy"] == pytest.approx(12 / 18)
    assert data["per_type"]["LOC"]["support"] == 3


def test_score_report_strict_mode():
    result = run_cli("score", EXAMPLE, "--strict")
    assert result.returncode == 0, result.stderr
    assert "processed 18 words with 6 entities; found: 5; correct: 2." in result.stdout
    assert "F1 0.3636" in result.stdout and "strict IOB2" in result.stdout and "95% CI" in result.stdout


def test_score_reads_iob1_as_written_unless_told():
    iob1 = str(FIXTURES / "iob1_example.txt")
    as_written = run_cli("score", iob1, "--strict", "--json")
    assert as_written.returncode == 0 and "look like IOB1" in as_written.stderr
    converted = run_cli("score", iob1, "--strict", "--scheme", "iob1", "--json")
    assert json.loads(converted.stdout)["f1"] == pytest.approx(6 / 9)
    assert json.loads(as_written.stdout)["f1"] < json.loads(converted.stdout)["f1"]


def test_score_bad_file_is_one_line_with_the_line_number(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG B-ORG\nrejects O\n")
    result = run_cli("score", str(bad))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {bad}:2: ") and result.stderr.count("\n") == 1


# ---- evaluate ----------------------------------------------------------------------


def _to_iob1(tags: list[str]) -> list[str]:
    """IOB2 -> IOB1: B- only where an entity follows one of the same type."""
    out, previous = [], None
    for tag in tags:
        entity_type = tag[2:] if tag != "O" else None
        out.append(tag if tag == "O" or (tag.startswith("B-") and previous == entity_type) else f"I-{entity_type}")
        previous = entity_type
    return out


@pytest.fixture(scope="module")
def evaluated(tiny_model, conll_files, tmp_path_factory):
    """One `nertune evaluate` run on an IOB1 file: 20 sentences and one of more than 512 wordpieces."""
    sentences = read_conll(conll_files["validation"]).sentences
    short, rest = sentences[:20], sentences[20:]
    tokenizer = load_tokenizer(str(tiny_model))
    long_words, long_tags = [], []
    for s in rest:
        long_words += s.words
        long_tags += s.tags
        if len(encode_words(tokenizer, [long_words])[0].piece_ids) > 700:
            break
    words = [s.words for s in short] + [long_words]
    tags = [s.tags for s in short] + [long_tags]
    folder = tmp_path_factory.mktemp("evaluate")
    gold_file = folder / "gold_iob1.txt"
    gold_file.write_text("\n".join("".join(f"{w} {t}\n" for w, t in zip(ws, _to_iob1(ts))) for ws, ts in zip(words, tags)))
    predictions, report_dir = folder / "pred.txt", folder / "report"
    result = run_cli(
        "evaluate", str(tiny_model), "--file", str(gold_file), "--json", "--predictions", str(predictions), "--report-dir", str(report_dir)
    )
    assert result.returncode == 0, result.stderr
    return {
        "report": json.loads(result.stdout),
        "stderr": result.stderr,
        "words": words,
        "tags": tags,
        "gold_file": gold_file,
        "predictions": predictions,
        "report_dir": report_dir,
        "pieces": len(encode_words(tokenizer, [long_words])[0].piece_ids),
    }


def test_evaluate_counts_every_word_of_a_sentence_longer_than_512_wordpieces(evaluated):
    report = evaluated["report"]
    assert evaluated["pieces"] > 512
    assert report["sentences"] == 21 and report["long_sentences"] == 1
    assert report["words"] == sum(len(w) for w in evaluated["words"])
    written = read_predictions(evaluated["predictions"])
    assert written.words == evaluated["words"]
    assert [len(p) for p in written.pred] == [len(w) for w in evaluated["words"]]


def test_every_word_of_the_long_sentence_is_scored_by_a_window(tiny_model, evaluated):
    """The loss counts every labelled word: none falls between windows."""
    model, tokenizer = load_trained(tiny_model), load_tokenizer(str(tiny_model))
    words, tags = evaluated["words"][-1], evaluated["tags"][-1]
    labels = [[model.config.label2id[t] for t in tags]]
    windows = build_windows(tokenizer, [words], max_pieces_for(model, tokenizer), labels)
    assert len(windows) > 1
    scores = predict_word_logits(model, windows, 1, [len(words)], tokenizer.pad_token_id)
    assert scores.labelled == len(words)
    assert sorted(w for window in windows for w in window.words) == list(range(len(words)))


def test_evaluate_reports_the_scheme_it_saw_and_converts_iob1(evaluated):
    report = evaluated["report"]
    assert report["scheme"] == "iob1" and "converted to IOB2" in evaluated["stderr"]
    assert report["decoding"] == "argmax" and report["mode"] == "conlleval"
    assert read_predictions(evaluated["predictions"]).gold == evaluated["tags"]  # written in IOB2


def test_score_on_evaluate_predictions_reproduces_its_numbers_exactly(evaluated):
    result = run_cli("score", str(evaluated["predictions"]), "--json")
    assert result.returncode == 0, result.stderr
    scored, report = json.loads(result.stdout), evaluated["report"]
    assert scored == {k: report[k] for k in ("precision", "recall", "f1", "accuracy", "per_type")}


def test_evaluate_report_has_loss_interval_errors_and_plots(evaluated):
    report = evaluated["report"]
    assert report["loss"] > 0
    interval = report["f1_interval"]
    assert interval["low"] <= report["f1"] <= interval["high"] and interval["f1"] == pytest.approx(report["f1"])
    errors = report["errors"]
    assert errors["correct"] == report["correct_entities"]
    assert (
        sum(errors[k] for k in ("wrong_type", "wrong_boundary", "wrong_type_and_boundary", "missed"))
        == report["gold_entities"] - report["correct_entities"]
    )
    folder = evaluated["report_dir"]
    assert json.loads((folder / "evaluation.json").read_text())["f1"] == report["f1"]
    for name in ("per_type_f1.png", "confusion.png"):
        assert (folder / name).read_bytes().startswith(PNG)


def test_evaluate_refuses_two_data_sources(tiny_model):
    result = run_cli("evaluate", str(tiny_model), "--data", "conll2003", "--file", EXAMPLE)
    assert result.returncode == 2 and "give --data or --file, not both" in result.stderr


# ---- compare -------------------------------------------------------------------------


def test_compare_a_model_dir_with_its_own_predictions_gives_zero(tiny_model, evaluated):
    result = run_cli("compare", str(tiny_model), str(evaluated["predictions"]), "--file", str(evaluated["gold_file"]), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["a"]["f1"] == data["b"]["f1"] == evaluated["report"]["f1"]
    assert (data["difference"], data["low"], data["high"]) == (0.0, 0.0, 0.0)
    assert data["verdict"].startswith("no clear difference")


def test_compare_finds_a_better_system(evaluated, tmp_path):
    written = read_predictions(evaluated["predictions"])
    better = tmp_path / "better.txt"
    # B: the same predictions with the first 15 sentences corrected.
    better.write_text(
        "\n".join(
            "".join(f"{w} {g} {g if i < 15 else p}\n" for w, g, p in zip(ws, gs, ps))
            for i, (ws, gs, ps) in enumerate(zip(written.words, written.gold, written.pred))
        )
    )
    result = run_cli("compare", str(evaluated["predictions"]), str(better))
    assert result.returncode == 0, result.stderr
    assert "B is better" in result.stdout and "F1(B) - F1(A) = +" in result.stdout


def test_compare_refuses_different_data(evaluated, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("EU B-ORG B-ORG\n")
    result = run_cli("compare", str(evaluated["predictions"]), str(other))
    assert result.returncode == 2 and "not the same data" in result.stderr


# ---- plots of a training run ---------------------------------------------------------------


def test_training_run_writes_plots_and_the_card_links_them(tiny_model):
    card = (tiny_model / "README.md").read_text()
    for name in ("training_curves.png", "per_type_f1.png", "confusion.png"):
        assert (tiny_model / name).read_bytes().startswith(PNG)
        assert f"]({name})" in card
