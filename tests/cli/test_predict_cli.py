"""`nertune predict`: data alone on stdout, one result per input line, streaming, clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import pytest

from nertune.cli.predict import chunks, read_lines
from nertune.data.words import sentence_words
from nertune.errors import NertuneError
from tests.conftest import REPO, run_cli

LINES = [
    "EU rejects German call to boycott British lamb .",
    "",
    "Peter Blackburn went to the U.S. He met Mr. Smith in Zürich 東京 😀",
    "   ",
    "BRUSSELS 1996-08-22",
]


def test_jsonl_file_one_object_per_line_offsets_exact(tiny_model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\ufeff" + "\r\n".join(LINES) + "\n", encoding="utf-8")  # BOM and CRLF, as editors write them
    result = run_cli("predict", str(tiny_model), str(source), "--batch-lines", "2")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == LINES
    assert rows[0]["entities"], "the tiny model tags British"
    for row in rows:
        for e in row["entities"]:
            assert row["text"][e["start"] : e["end"]] == e["text"] and set(e) == {"text", "type", "start", "end", "score"}
    assert "tagging" in result.stderr  # the progress bar is on stderr, never stdout


def test_json_text_and_conll_from_stdin(tiny_model):
    result = run_cli("predict", str(tiny_model), "--text", LINES[0], "--format", "json", "--no-constrain")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["text"] == LINES[0] and {e["text"] for e in row["entities"]} <= set(LINES[0].split())

    result = run_cli("predict", str(tiny_model), "-", "--format", "conll", input="\n".join(LINES) + "\n")
    assert result.returncode == 0, result.stderr
    blocks = [block.splitlines() for block in result.stdout.strip("\n").split("\n\n")]
    expected = [[w.text for w in sentence] for line in LINES for sentence in sentence_words(line)]
    assert [[line.split(" ")[0] for line in block] for block in blocks] == expected
    assert all(line.split(" ")[1] in ("O",) or line.split(" ")[1][:2] in ("B-", "I-") for block in blocks for line in block)


def test_output_streams_before_input_ends(tiny_model):
    """With --batch-lines 1 the first result is written while stdin is still open."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nertune", "predict", str(tiny_model), "-", "--batch-lines", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    closed_at = []

    def close_later():  # safety net: never hang the suite if streaming were broken
        time.sleep(240)
        closed_at.append(time.monotonic())
        process.stdin.close()

    process.stdin.write(LINES[0] + "\n")
    process.stdin.flush()
    threading.Thread(target=close_later, daemon=True).start()
    first = process.stdout.readline()
    assert not closed_at, "no output until stdin closed: not streaming"
    assert json.loads(first)["text"] == LINES[0]
    process.stdin.write("Second line\n")
    process.stdin.close()
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 0
    assert json.loads(rest)["text"] == "Second line"


def test_user_errors_are_one_line_with_a_fix(tiny_model, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine line\ncaf\xe9\n".encode("latin-1"))
    for args, needle in [
        ((str(tmp_path / "missing.txt"),), "missing.txt: file not found"),
        ((), "give either --text TEXT or a FILE"),
        (("--text", "x", "-"), "not both"),
        (("--text", "x", "--format", "xml"), "unknown format 'xml'"),
        (("--text", "x", "--precision", "fp16"), "unknown precision 'fp16'"),
        ((str(bad),), "latin1.txt:2: byte 0xe9 is not UTF-8"),
    ]:
        result = run_cli("predict", str(tiny_model), *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1] and "fix:" in lines[-1]
        assert "Traceback" not in result.stderr
    result = run_cli("predict", str(tmp_path / "no-model"), "--text", "x")
    assert result.returncode == 2 and "model directory not found" in result.stderr


def test_a_line_over_the_limit_comes_in_pieces_that_join_to_it():
    """A file with no line breaks never sits in memory whole: long lines are cut between sentences."""
    line = "Peter Blackburn met Mr. Smith in Zürich on Monday . " * 100  # 5,200 characters
    notices: list[str] = []
    texts = list(read_lines(io.BytesIO(("\ufeffshort\r\n" + line + "\nlast é").encode()), "in.txt", 1000, notices.append))
    assert texts[0] == "short" and texts[-1] == "last é" and notices[0].startswith("in.txt:2 is longer than 1,000 characters")
    pieces = texts[1:-1]
    assert "".join(pieces) == line and len(pieces) >= 6 and all(len(p) <= 1000 for p in pieces)
    assert all(p.endswith(". ") for p in pieces[:-1])  # cut between sentences, not inside one
    wide = "東京 " * 1000  # 3 bytes a character: readline's byte limit cuts inside characters
    pieces = list(read_lines(io.BytesIO(wide.encode()), "in.txt", 1000))
    assert "".join(pieces) == wide and len(pieces) >= 3 and all(len(p) <= 1000 for p in pieces)
    # and the pieces are tagged a few at a time, not the whole line at once
    assert [len(chunk) for chunk in chunks(iter(["x" * 600] * 5), 256, 1000)] == [2, 2, 1]
    bad = b"ok\n" + b"a " * 1500 + b"caf\xe9\n"
    with pytest.raises(NertuneError, match=r"in\.txt:2: byte 0xe9 is not UTF-8"):
        list(read_lines(io.BytesIO(bad), "in.txt", 1000))


def test_predict_tags_a_long_line_in_pieces_with_exact_offsets(tiny_model, tmp_path):
    source = tmp_path / "one-line.txt"
    line = " ".join([LINES[0]] * 60)  # 2,939 characters, no line break
    source.write_text(line, encoding="utf-8")
    result = run_cli("predict", str(tiny_model), str(source), "--max-line-chars", "1000", "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(rows) == 3 and "".join(r["text"] for r in rows) == line
    assert sum(len(r["entities"]) for r in rows) >= 60  # British, in every sentence
    for row in rows:
        for e in row["entities"]:
            assert row["text"][e["start"] : e["end"]] == e["text"]
    assert "one-line.txt:1 is longer than 1,000 characters" in " ".join(result.stderr.split())


@pytest.mark.parametrize("command", [["predict", "--text", "x"], ["export", "--onnx", "out"], ["evaluate"], ["serve"]])
def test_a_missing_model_directory_fails_before_torch_loads(command, tmp_path):
    """A typo in the path costs a fraction of a second, not the 5 s of importing torch and transformers."""
    name, *rest = command
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nertune", name, str(tmp_path / "typo"), *rest],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert errors == [f"error: {tmp_path / 'typo'}: model directory not found — fix: pass the --output-dir of a training run"]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "nertune.cli" in imported and not imported & {"torch", "transformers"}
