"""`nertune convert IN OUT` and `nertune data FILE...`: your own data, between formats, and what is in it.

Both read every format training reads (data/formats.py) with the same options, generated from the recipe
schema: what `convert` writes and what `data` reports is what `nertune train` would see.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from nertune.cli.app import _console, app
from nertune.cli.options import recipe_options, with_parameters
from nertune.data.conll import ConllFile
from nertune.data.formats import read_data
from nertune.data.labels import apply_label_map, parse_label_map
from nertune.data.writers import WRITE_FORMATS, output_format, write_sentences
from nertune.errors import NertuneError

READ_FIELDS = ["tag_column", "ragged_columns", "tokens_field", "tags_field", "text_field", "spans_field", "label_names"]
READ_FIELDS += ["strict_spans", "overlaps", "label_map"]


def _read(path: str, options: dict) -> tuple[ConllFile, Counter]:
    from nertune.training.recipe import load_recipe  # noqa: PLC0415  (the schema checks the options' ranges)
    from nertune.training.setup import read_options  # noqa: PLC0415  (setup loads torch)

    recipe = load_recipe(None, options)
    data = read_data(path, read_options(recipe))
    return data, apply_label_map(data, parse_label_map(recipe.label_map))


def summary(data: ConllFile) -> dict:
    """Sentences, words, documents and entities per type of one data file."""
    entities = data.entity_counts()
    return {
        "path": data.path,
        "scheme": data.scheme,
        "sentences": len(data.sentences),
        "words": sum(len(s.words) for s in data.sentences),
        "documents": len({s.document for s in data.sentences}),
        "entities": sum(entities.values()),
        "entities_per_type": dict(sorted(entities.items())),
        "longest_sentence_words": max((len(s.words) for s in data.sentences), default=0),
    }


def convert(input: str, output: str, to: Optional[str], scheme: str, **options) -> None:
    """Convert NER data between formats: CoNLL, JSONL words+tags, JSONL text+spans (and read any format training reads)."""
    if to is not None and to not in WRITE_FORMATS:
        raise NertuneError(f"unknown output format {to!r}", fix=f"use --to {' | '.join(WRITE_FORMATS)}")
    if scheme not in ("iob2", "bioes"):
        raise NertuneError(f"unknown scheme {scheme!r}", fix="use --scheme iob2 or bioes")
    if Path(output).resolve() == Path(input).resolve():
        raise NertuneError("OUT is IN", path=output, fix="write to another file")
    data, dropped = _read(input, options)
    fmt = output_format(output, to)
    write_sentences(data.sentences, output, fmt, scheme)
    from nertune.console import notice as say_notice  # noqa: PLC0415  (CLI start-up: rich console)

    console = _console()
    for notice_text in data.notices:
        say_notice(notice_text)
    facts = summary(data)
    per_type = ", ".join(f"{k} {v:,}" for k, v in facts["entities_per_type"].items()) or "none"
    console.print(
        f"{input} -> {output} ({fmt}{', ' + scheme.upper() if fmt != 'spans' else ''}): {facts['sentences']:,} sentences, "
        f"{facts['words']:,} words, {facts['entities']:,} entities ({per_type})",
        markup=False,
        highlight=False,
    )
    if dropped:
        console.print(f"dropped by --label-map: {', '.join(f'{k} {v:,}' for k, v in sorted(dropped.items()))}", markup=False)


def data(files: list[str], model: str, json_out: bool, **options) -> None:
    """What a practitioner checks first: sentences, words, entities per type, scheme, long sentences, label differences."""
    read = [_read(path, options)[0] for path in files]
    facts = [summary(f) for f in read]
    max_pieces, tokenizer = _window(model)
    for f, fact in zip(read, facts):
        lengths = [len(tokenizer(s.words, is_split_into_words=True, add_special_tokens=False)["input_ids"]) for s in f.sentences]
        fact["sentences_over_window"] = sum(n > max_pieces for n in lengths)
        fact["window_pieces"] = max_pieces
    types = [set(fact["entities_per_type"]) for fact in facts]
    union = set().union(*types)
    differences = {fact["path"]: sorted(union - t) for fact, t in zip(facts, types) if union - t}
    if json_out:
        sys.stdout.write(json.dumps({"files": facts, "types_missing": differences}, indent=2) + "\n")
        return
    out = _console()
    for fact in facts:
        out.print(
            f"{fact['path']}: {fact['sentences']:,} sentences, {fact['words']:,} words, {fact['documents']:,} documents, "
            f"scheme {fact['scheme']}; {fact['sentences_over_window']:,} sentences over the model's {fact['window_pieces']} "
            "wordpieces (cut into overlapping windows, never truncated)",
            markup=False,
            highlight=False,
        )
        for kind, count in fact["entities_per_type"].items():
            out.print(f"  {kind:<12} {count:>8,}", markup=False, highlight=False)
    for path, missing in differences.items():
        out.print(f"{path} has no {', '.join(missing)} entities (other files have them)", markup=False, highlight=False)


def _window(model: str):
    from nertune.data.embedded import resolve_model  # noqa: PLC0415  (hub checks only here)
    from nertune.model.load import load_tokenizer  # noqa: PLC0415  (tokenizers: not at start-up)

    resolve_model(model)
    tokenizer = load_tokenizer(model)
    limit = min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
    return limit - 2, tokenizer


def _parameter(name: str, kind, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)


_CONVERT = [
    _parameter("input", str, typer.Argument(..., help="Data to read (any format `nertune train` reads).")),
    _parameter("output", str, typer.Argument(..., help="File to write: .conll/.txt (CoNLL) or .jsonl.")),
    _parameter("to", Optional[str], typer.Option(None, help="conll | tokens (JSONL words + tags) | spans (JSONL text + spans).")),
    _parameter("scheme", str, typer.Option("iob2", help="Tags written: iob2 | bioes.")),
]
_DATA = [
    _parameter("files", list[str], typer.Argument(..., help="Data files or folders (any format `nertune train` reads).")),
    _parameter("model", str, typer.Option("embedded-minilm", help="Model whose window the sentences are measured against.")),
    _parameter("json_out", bool, typer.Option(False, "--json", help="Print the facts as JSON on stdout.")),
]
app.command(name="convert")(with_parameters(convert, _CONVERT + recipe_options(READ_FIELDS)))
app.command(name="data")(with_parameters(data, _DATA + recipe_options(READ_FIELDS)))
