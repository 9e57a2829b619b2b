"""Choose the train / validation / test data (any format data/formats.py reads), map its labels, and
build the label set over them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from nertune.data.conll import ConllFile, Sentence
from nertune.data.embedded import conll2003_files
from nertune.data.formats import detect_format, read_data
from nertune.data.jsonl import ReadOptions
from nertune.data.labels import apply_label_map
from nertune.errors import NertuneError


@dataclass
class Splits:
    train: ConllFile | None
    validation: ConllFile | None
    test: ConllFile | None
    labels: list[str]
    md5: dict[str, str]
    extra_notices: list[str] | None = None

    def notices(self) -> list[str]:
        return [n for f in (self.train, self.validation, self.test) if f for n in f.notices] + (self.extra_notices or [])


def file_md5(path: str | Path) -> str:
    """The md5 of a data file, or of a folder's files (names and bytes, sorted): what a resume checks."""
    digest = hashlib.md5()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
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
    options: ReadOptions | None = None,
    label_map: dict | None = None,
    train_on_validation: bool = False,
    held_out: tuple[int, int] | None = None,
) -> Splits:
    """The three splits as the recipe names them (`held_out` (K, N): the training documents of fold K of N are left
    out; `train_on_validation`: the validation sentences join the training ones, after them, as documents of their
    own, and there is no validation split)."""
    options = options or ReadOptions(ragged=ragged)
    paths: dict[str, str | None] = {"train": train, "validation": validation, "test": test}
    split_of = {}  # a Hugging Face DatasetDict's split for each of ours
    if data == "conll2003" and not any(paths.values()):
        paths = {k: str(v) for k, v in conll2003_files().items()}
    elif data not in (None, "", "conll2003", "files"):
        if not Path(data).exists():
            raise NertuneError(
                f"unknown data set {data!r}",
                fix="use --data conll2003, a saved Hugging Face dataset folder, or --train/--validation/--test FILE",
            )
        paths, split_of = _dataset_dict(data)
    if not paths["train"] and not paths["validation"] and not paths["test"]:
        raise NertuneError("no data given", fix="use --data conll2003, or --train/--validation/--test FILE")

    loaded = {}
    for name, path in paths.items():
        split = split_of.get(name) or options.split or (_role_split(path, name) if path else None)
        loaded[name] = read_data(path, ReadOptions(**{**vars(options), "split": split})) if path else None
    dropped = {name: apply_label_map(f, label_map) for name, f in loaded.items() if f is not None}
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
    notices = _label_notices(loaded, dropped)
    if held_out:
        notices.append(_hold_out(loaded["train"], paths["train"], *held_out))
    if train_on_validation:
        notices.append(_join_validation(loaded))
    return Splits(loaded["train"], loaded["validation"], loaded["test"], labels, md5, notices)


def document_folds(sentences: list[Sentence], folds: int) -> list[int]:
    """Each sentence's fold, 1..folds: its document's, documents dealt round-robin by their index in the file, so a
    fold holds whole documents (a held-out sentence's context is held out with it) and a slice keeps its folds."""
    return [s.document % folds + 1 for s in sentences]


def _hold_out(train: ConllFile | None, path: str | None, fold: int, folds: int) -> str:
    if train is None:
        raise NertuneError("hold_out needs a training split", fix="give --train FILE, or leave hold_out off")
    documents = {s.document for s in train.sentences}
    if len(documents) < folds:
        raise NertuneError(
            f"hold_out {fold}/{folds} deals documents into {folds} folds, but the training data has {len(documents)} document(s)",
            path=path,
            fix="mark documents (-DOCSTART- lines in a CoNLL file; each JSONL record is one), or use fewer folds",
        )
    kept = [s for s, f in zip(train.sentences, document_folds(train.sentences, folds)) if f != fold]
    left = len(train.sentences) - len(kept)
    if not kept or not left:  # document numbers can skip (empty documents): a fold can be empty or all there is
        raise NertuneError(
            f"hold_out {fold}/{folds} would {'train on nothing' if not kept else 'hold out nothing'}: the training documents fall "
            "into fewer folds than that",
            path=path,
            fix="use fewer folds, or more documents",
        )
    train.sentences = kept
    return f"training without fold {fold} of {folds} of the training documents: {left} sentences held out, {len(kept)} kept"


def _join_validation(loaded: dict) -> str:
    train, validation = loaded["train"], loaded["validation"]
    if train is None or validation is None:
        raise NertuneError("train_on_validation needs both a train and a validation split", fix="give both, or leave it off")
    first = max((s.document for s in train.sentences), default=-1) + 1  # document context never crosses the seam
    train.sentences = train.sentences + [replace(s, document=first + s.document) for s in validation.sentences]
    loaded["validation"] = None
    return (
        f"training on train + validation ({len(train.sentences)} sentences): no validation scores, "
        "the last epoch's weights are the model, and its test score is reported apart from validation-chosen runs"
    )


ROLE_SPLITS = {"train": ("train",), "validation": ("validation", "dev", "valid"), "test": ("test",)}


def _role_split(path: str, role: str) -> str | None:
    """A DatasetDict folder given as --train / --validation / --test reads its split of that role (not always train)."""
    if not Path(path).is_dir() or detect_format(path) != "hf":
        return None
    from nertune.data.hf_datasets import hf_splits  # noqa: PLC0415  (optional: datasets extra)

    names = hf_splits(path)
    if not names:
        return None  # one Dataset: its rows are the split
    found = next((n for n in ROLE_SPLITS[role] if n in names), None)
    if found is None:
        raise NertuneError(
            f"the dataset has no {role} split (it has: {', '.join(names)})", path=path, fix="give --data FOLDER to take its splits by name"
        )
    return found


def _dataset_dict(folder: str) -> tuple[dict[str, str | None], dict[str, str]]:
    """`--data FOLDER` for a Hugging Face DatasetDict: its train / validation (or dev) / test splits."""
    if detect_format(folder) != "hf":
        raise NertuneError(
            "--data takes conll2003 or a saved Hugging Face dataset", path=folder, fix="give files with --train/--validation/--test"
        )
    from nertune.data.hf_datasets import hf_splits  # noqa: PLC0415  (optional: datasets extra)

    names = hf_splits(folder) or []
    split_of = {k: next((n for n in alias if n in names), None) for k, alias in ROLE_SPLITS.items()}
    if not split_of["train"]:
        raise NertuneError(
            f"the dataset has no train split (it has: {', '.join(names) or 'none'})",
            path=folder,
            fix="save the training rows as a split named train",
        )
    return {k: folder if v else None for k, v in split_of.items()}, {k: v for k, v in split_of.items() if v}


def _label_notices(loaded: dict[str, ConllFile | None], dropped: dict) -> list[str]:
    """What --label-map dropped, and types in validation / test that training never saw."""
    notices = [
        f"--label-map dropped {sum(counts.values()):,} {name} entities ({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))})"
        for name, counts in dropped.items()
        if counts
    ]
    if loaded.get("train") is not None:
        seen = loaded["train"].entity_types
        for name in ("validation", "test"):
            if loaded.get(name) is None:
                continue
            unseen = {kind: n for kind, n in loaded[name].entity_counts().items() if kind not in seen}
            if unseen:
                listed = ", ".join(f"{k} ({v:,})" for k, v in sorted(unseen.items()))
                notices.append(f"{name} has entity types training never saw: {listed}; the model cannot predict them")
    return notices
