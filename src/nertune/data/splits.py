"""Choose the train / validation / test files and the label set over them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from nertune.data.conll import ConllFile, read_conll
from nertune.data.embedded import conll2003_files
from nertune.errors import NertuneError


@dataclass
class Splits:
    train: ConllFile | None
    validation: ConllFile | None
    test: ConllFile | None
    labels: list[str]
    md5: dict[str, str]

    def notices(self) -> list[str]:
        return [n for f in (self.train, self.validation, self.test) if f for n in f.notices]


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_labels(files: list[ConllFile]) -> list[str]:
    """Union over all splits, with both B- and I- for every type: 'O' first."""
    types = sorted(set().union(*(f.entity_types for f in files)))
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


def load_splits(
    data: str | None = "conll2003",
    train: str | None = None,
    validation: str | None = None,
    test: str | None = None,
    max_train_sentences: int | None = None,
    max_eval_sentences: int | None = None,
    ragged: bool = False,
) -> Splits:
    paths: dict[str, str | None] = {"train": train, "validation": validation, "test": test}
    if data == "conll2003" and not any(paths.values()):
        paths = {k: str(v) for k, v in conll2003_files().items()}
    elif data not in (None, "", "conll2003", "files"):
        raise NertuneError(f"unknown data set {data!r}", fix="use --data conll2003, or --train/--validation/--test FILE")
    if not paths["train"] and not paths["validation"] and not paths["test"]:
        raise NertuneError("no data given", fix="use --data conll2003, or --train/--validation/--test FILE")

    loaded = {name: read_conll(path, ragged) if path else None for name, path in paths.items()}
    # Labels come from the whole files, so a slice still knows every type.
    labels = build_labels([f for f in loaded.values() if f is not None])
    limits = {"train": max_train_sentences, "validation": max_eval_sentences, "test": max_eval_sentences}
    for name, conll in loaded.items():
        limit = limits[name]
        if conll is not None and limit is not None:
            if limit < 1:
                raise NertuneError(f"--max-{'train' if name == 'train' else 'eval'}-sentences must be at least 1")
            conll.sentences = conll.sentences[:limit]
    md5 = {name: file_md5(path) for name, path in paths.items() if path}
    return Splits(loaded["train"], loaded["validation"], loaded["test"], labels, md5)
