"""Which reader a data path needs, by its extension and, failing that, its first bytes.

    folder with dataset_dict.json / dataset_info.json / state.json  -> Hugging Face datasets (save_to_disk)
    folder with .ann files                                          -> brat standoff (.txt + .ann pairs)
    .jsonl / .ndjson / .json, or text starting with { or [          -> JSON records (data/jsonl.py)
    .spacy, or zlib-compressed bytes                                -> spaCy DocBin
    .parquet / .arrow, or their magic bytes                         -> Hugging Face datasets
    anything else                                                   -> CoNLL columns (data/conll.py)

`read_data(path, options)` reads any of them into a ConllFile (sentences of words and IOB2 tags).
"""

from __future__ import annotations

from pathlib import Path

from nertune.data.conll import ConllFile, read_conll
from nertune.data.jsonl import ReadOptions, read_json
from nertune.errors import NertuneError

FORMATS = ("conll", "json", "hf", "spacy", "brat")
_HF_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        if any((path / marker).is_file() for marker in _HF_MARKERS):
            return "hf"
        if any(path.glob("*.ann")):
            return "brat"
        raise NertuneError(
            "is a folder, but neither a Hugging Face dataset (save_to_disk) nor a brat folder (.txt + .ann pairs)",
            path=str(path),
            fix="name a data file, a save_to_disk folder or a brat folder",
        )
    suffix = path.suffix.lower()
    by_suffix = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".spacy": "spacy", ".parquet": "hf", ".arrow": "hf"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return "conll"  # the CoNLL reader says what is wrong with the path
    if head.startswith(b"PAR1") or head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "hf"
    if head[:1] == b"x" and len(head) > 1 and head[1] in (0x01, 0x5E, 0x9C, 0xDA):  # zlib: how DocBin.to_disk writes
        return "spacy"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return "conll"


def read_data(path: str | Path, options: ReadOptions | None = None, fmt: str | None = None) -> ConllFile:
    """Sentences of words and IOB2 tags from a data path of any format nertune reads."""
    options = options or ReadOptions()
    fmt = fmt or detect_format(path)
    if fmt == "conll":
        return read_conll(path, options.ragged, options.tag_column)
    if fmt == "json":
        return read_json(path, options)
    if fmt == "hf":
        from nertune.data.hf_datasets import read_hf  # noqa: PLC0415  (optional: datasets extra)

        return read_hf(str(path), options)
    if fmt == "spacy":
        from nertune.data.docbin import read_docbin  # noqa: PLC0415  (optional: spacy extra)

        return read_docbin(str(path), options)
    if fmt == "brat":
        from nertune.data.brat import read_brat  # noqa: PLC0415  (brat folders only)

        return read_brat(str(path), options)
    raise NertuneError(f"unknown data format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
