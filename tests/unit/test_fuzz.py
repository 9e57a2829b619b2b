"""Fuzzed input: whatever bytes a CoNLL or recipe file holds, only NertuneError escapes.

Random bytes and text, and real CoNLL-2003 lines mutated the ways files go
wrong (dropped columns, NULs, invalid UTF-8, odd tags, CRLF, BOM, odd
whitespace, truncation). A file either reads into well-formed IOB2
sentences or fails with one line naming the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nertune.data.conll import parse_conll, read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.schemes import TAG_PATTERN
from nertune.data.splits import load_splits
from nertune.errors import NertuneError
from nertune.training.recipe import RECIPES_DIR, Recipe, load_recipe

# 200 examples a test in the suite; benchmarks/quality/adversarial.py asks for more through NERTUNE_FUZZ_EXAMPLES
FUZZ = settings(
    max_examples=int(os.environ.get("NERTUNE_FUZZ_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
REAL_LINES = conll2003_files()["train"].read_bytes().split(b"\n")[:80]
TAGS = [
    "O",
    "B-PER",
    "I-PER",
    "E-LOC",
    "S-ORG",
    "U-MISC",
    "L-MISC",
    "B-",
    "I-",
    "O-PER",
    "b-per",
    "B-PER-X",
    "X",
    "-",
    "B--",
    "I-\u00e9",
    "B-PER\u00a0",
]


def _file(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=".conll", delete=False)
    handle.write(data)
    handle.close()
    return Path(handle.name)


def _read_or_clear_error(data: bytes):
    path = _file(data)
    try:
        conll = read_conll(path)
    except NertuneError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return None
    finally:
        path.unlink()
    for sentence in conll.sentences:
        assert sentence.words and len(sentence.words) == len(sentence.tags)
        assert all(TAG_PATTERN.match(tag) and tag[0] in "OBI" for tag in sentence.tags), sentence.tags  # IOB2 now
    return conll


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data):
    _read_or_clear_error(data)


@FUZZ
@given(st.text(max_size=3000))
def test_random_text(text):
    try:
        parse_conll(text, "fuzz.txt")
    except NertuneError as error:
        assert "fuzz.txt" in str(error)


def _mutate(line: bytes, op: str, draw) -> bytes:
    columns = line.split(b" ")
    if op == "drop_column" and len(columns) > 1:
        del columns[draw(st.integers(0, len(columns) - 1))]
        return b" ".join(columns)
    if op == "nul":
        at = draw(st.integers(0, len(line)))
        return line[:at] + b"\x00" + line[at:]
    if op == "bad_utf8":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xfc"])) + line[at:]
    if op == "tag":
        return b" ".join(columns[:-1] + [draw(st.sampled_from(TAGS) | st.text(max_size=8)).encode("utf-8", "surrogatepass")])
    if op == "crlf":
        return line + b"\r"
    if op == "whitespace":
        return draw(st.sampled_from([b"\t", b"  ", b"\x0b", b"\xc2\xa0", b"\xe2\x80\xa8", b"\x1c"])).join(columns)
    if op == "docstart":
        return b"-DOCSTART- -X- -X- O"
    if op == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t", b"\r"]))
    return line


@FUZZ
@given(st.data())
def test_mutated_real_conll(data):
    lines = list(REAL_LINES[: data.draw(st.integers(1, len(REAL_LINES)))])
    ops = ["drop_column", "nul", "bad_utf8", "tag", "crlf", "whitespace", "docstart", "blank"]
    for _ in range(data.draw(st.integers(0, 6))):
        index = data.draw(st.integers(0, len(lines) - 1))
        lines[index] = _mutate(lines[index], data.draw(st.sampled_from(ops)), data.draw)
    raw = b"\n".join(lines)
    if data.draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw  # BOM
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]  # truncated
    conll = _read_or_clear_error(raw)
    if conll is not None:  # and the splits built on it read too
        path = _file(raw)
        try:
            splits = load_splits(None, train=str(path), validation=str(path), max_train_sentences=5)
            assert splits.labels[0] == "O" and len(splits.train.sentences) <= 5
        finally:
            path.unlink()


def test_an_unmutated_slice_reads():
    conll = _read_or_clear_error(b"\n".join(REAL_LINES))
    assert conll is not None and conll.sentences[0].words[0] == "EU"


# ---- recipes ------------------------------------------------------------------

FIELDS = sorted(Recipe.model_fields)
VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)


def _recipe_or_clear_error(text: str | bytes):
    path = _file(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return load_recipe(str(path))
    except NertuneError as error:
        assert "\n" not in str(error)
        return None
    finally:
        path.unlink()


@FUZZ
@given(st.binary(max_size=500) | st.text(max_size=500))
def test_random_recipe_files(content):
    _recipe_or_clear_error(content)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), VALUES, max_size=6))
def test_random_recipe_fields(fields):
    recipe = _recipe_or_clear_error(yaml.safe_dump(fields, allow_unicode=True))
    if recipe is not None:  # accepted: then every value is in range
        assert recipe.learning_rate > 0 and recipe.epochs >= 1 and recipe.keep_checkpoints >= 1


# YAML that safe_load itself chokes on in odd ways (ValueError, RecursionError), and values pydantic might bend.
YAML_VALUES = [
    "2024-13-45",
    "!!timestamp 2020-99-99",
    "!!int abc",
    "!!float x",
    "!!binary xyz",
    "!!python/object:os.system x",
    "[" * 600,
    "&x [*x]",
    ".inf",
    ".nan",
    "1e400",
    "-1",
    "0",
    "yes",
    "no",
    "~",
    "{a: 1}",
    "[1, 2]",
    "'3'",
    "\x00",
    "\t",
    ":",
    "- x",
]


@FUZZ
@given(st.data())
def test_mutated_seed_recipe(data):
    lines = (RECIPES_DIR / "seed.yaml").read_text(encoding="utf-8").splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        key = lines[index].split(":")[0]
        value = data.draw(st.sampled_from(YAML_VALUES) | st.text(max_size=10))
        lines[index] = data.draw(st.sampled_from([f"{key}: {value}", value, f"{key}:{value}", lines[index] + value, ""]))
    _recipe_or_clear_error("\n".join(lines))
