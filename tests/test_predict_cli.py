"""`nertune predict`: data alone on stdout, one result per input line, streaming, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from nertune.tag.words import sentence_words
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
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
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
        ((str(bad),), "latin1.txt:2: byte 0xe9 is not UTF-8"),
    ]:
        result = run_cli("predict", str(tiny_model), *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and needle in lines[-1] and "fix:" in lines[-1]
        assert "Traceback" not in result.stderr
    result = run_cli("predict", str(tmp_path / "no-model"), "--text", "x")
    assert result.returncode == 2 and "model directory not found" in result.stderr
