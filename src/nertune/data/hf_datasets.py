"""Hugging Face `datasets` reader: a saved dataset folder, or one .parquet / .arrow file.

Read:
- a folder written by `Dataset.save_to_disk` (one split), or by `DatasetDict.save_to_disk` (several:
  `ReadOptions.split` names the one to read, "train" when not given; `hf_splits` lists them so the caller
  can map train / validation / test; an unknown split is an error listing the ones there are);
- one `.parquet` file (`Dataset.to_parquet`, or a file of the Hub's parquet export) or one `.arrow` file
  (a shard of a saved folder), read with `Dataset.from_parquet` / `Dataset.from_file`.

Columns: the words are `ReadOptions.tokens_field` or the first of "tokens", "words"; the tags are
`ReadOptions.tags_field` or the first of "ner_tags", "tags", "labels". Tags are strings (`B-PER`) or integer
ids; an id's name comes from the column's `ClassLabel` feature (`Sequence(ClassLabel(names=[...]))`), else
from `ReadOptions.label_names`, else the read stops with an error. IOB1, BIOES and BILOU tags are converted to
IOB2 with a notice; `ConllFile.scheme` is the scheme read.

Each row is one sentence. Documents: each row is its own document, unless the dataset has a "document" or
"doc_id" column: then consecutive rows with the same value are one document. Documents are numbered 0, 1,
2, ... in row order; a row with no words is skipped (counted in a notice).

Checked, the row named (0-based, as `dataset[17]`): words and tags are lists of the same length, every word is
a non-empty string, every tag is O or B-/I-/E-/S-/U-/L-TYPE, every id has a name. `datasets` is optional
(`pip install 'nertune[datasets]'`), imported only when such a file is read.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from nertune.data.conll import ConllFile, Sentence
from nertune.data.jsonl import ReadOptions
from nertune.data.records import NAMES_FIX, words_and_tags
from nertune.data.schemes import detect_scheme, to_iob2
from nertune.errors import NertuneError

TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels")
DOCUMENT_COLUMNS = ("document", "doc_id")
DEFAULT_SPLIT = "train"
_BATCH_ROWS = 1000


def _datasets():
    try:
        import datasets  # noqa: PLC0415  (optional dependency: only a Hugging Face file needs it)
    except ImportError:
        raise NertuneError("datasets is not installed", fix="pip install 'nertune[datasets]'") from None
    return datasets


@contextlib.contextmanager
def _quiet(datasets) -> Iterator[None]:
    """No progress bars while reading (they are the library's, for its own long jobs)."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.utils.enable_progress_bars()


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'…' if len(text) > 160 else ''}"


def _open(path: str, datasets, cache_dir: str):
    """The saved Dataset or DatasetDict at `path` (a folder, a .parquet or an .arrow file)."""
    target = Path(path)
    if not target.exists():
        raise NertuneError("not found", path=path, fix="check the path (a save_to_disk folder, a .parquet or an .arrow file)")
    suffix = target.suffix.lower()
    if target.is_file() and suffix not in (".parquet", ".arrow"):
        with open(target, "rb") as handle:  # named otherwise, known by its first bytes (data/formats.py sniffs them too)
            suffix = ".parquet" if handle.read(4) == b"PAR1" else suffix
    if target.is_file() and suffix not in (".parquet", ".arrow"):
        raise NertuneError(
            f"a Hugging Face dataset is a save_to_disk folder, a .parquet or an .arrow file, not {suffix or 'a file without extension'}",
            path=path,
            fix="pass the folder written by save_to_disk, or a .parquet / .arrow file",
        )
    try:
        if target.is_dir():
            return datasets.load_from_disk(path)
        if suffix == ".parquet":
            return datasets.Dataset.from_parquet(path, cache_dir=cache_dir, keep_in_memory=True)
        return datasets.Dataset.from_file(path)  # memory-mapped: the file is read as the rows are
    except FileNotFoundError as error:
        if target.is_dir():
            raise NertuneError(
                "not a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk "
                "(no dataset_info.json/state.json or dataset_dict.json)",
                path=path,
                fix="save the dataset with save_to_disk, or pass one .parquet / .arrow file",
            ) from None
        raise NertuneError(f"cannot read it ({_short(error)})", path=path, fix="check the file") from None
    except Exception as error:  # pyarrow and datasets raise many kinds for a damaged or foreign file
        kind = {".parquet": "a parquet file", ".arrow": "an Arrow file"}.get(suffix, "a saved Hugging Face dataset")
        raise NertuneError(
            f"cannot read it as {kind} ({_short(error)})", path=path, fix="check the file (re-save it with save_to_disk or to_parquet)"
        ) from None


def hf_splits(path: str) -> list[str] | None:
    """The split names of a folder written by `DatasetDict.save_to_disk`, in its order; None for a single
    Dataset (a save_to_disk folder of one split, a .parquet or an .arrow file)."""
    path = str(path)
    datasets = _datasets()
    with _quiet(datasets), tempfile.TemporaryDirectory(prefix="nertune-hf-") as cache_dir:
        loaded = _open(path, datasets, cache_dir)
        if isinstance(loaded, datasets.DatasetDict):
            return list(loaded)
        return None


def read_hf(path: str, options: ReadOptions | None = None) -> ConllFile:
    """The sentences of a Hugging Face dataset (see the module's docstring for what is read and checked)."""
    options = options or ReadOptions()
    path = str(path)
    datasets = _datasets()
    with _quiet(datasets), tempfile.TemporaryDirectory(prefix="nertune-hf-") as cache_dir:
        loaded = _open(path, datasets, cache_dir)
        if isinstance(loaded, datasets.DatasetDict):
            split = options.split or DEFAULT_SPLIT
            if split not in loaded:
                raise NertuneError(
                    f"no split {split!r}; the dataset has: {', '.join(loaded) or 'none'}",
                    path=path,
                    fix="name one of those splits (--split)",
                )
            dataset, shown = loaded[split], f"{path} [{split}]"
        else:
            dataset, shown = loaded, path
        sentences, empty = _sentences(dataset, path, shown, options)
    if not sentences:
        raise NertuneError("no rows with words", path=path, fix="check the dataset (and --split)")
    notices = []
    if empty:
        rows = ", ".join(f"row {r}" for r in empty[:3]) + (f"; and {len(empty) - 3} more" if len(empty) > 3 else "")
        notices.append(f"{shown}: {len(empty)} rows with no words skipped ({rows})")
    scheme = detect_scheme([s.tags for s in sentences])
    if scheme != "iob2":
        for sentence in sentences:
            sentence.tags = to_iob2(sentence.tags, scheme)
        notices.append(f"{shown}: tags are {scheme.upper()}; converted to IOB2")
    return ConllFile(path=path, sentences=sentences, scheme=scheme, notices=notices)


def _column(columns: list[str], given: str | None, defaults: tuple[str, ...], what: str, flag: str, path: str) -> str:
    if given:
        if given in columns:
            return given
        raise NertuneError(f"no column {given!r} (columns: {', '.join(columns)})", path=path, fix=f"name the {what} column with {flag}")
    found = next((name for name in defaults if name in columns), None)
    if found is None:
        raise NertuneError(
            f"no {what} column ({' / '.join(defaults)}); columns: {', '.join(columns)}",
            path=path,
            fix=f"name the {what} column with {flag}",
        )
    return found


def _class_names(feature) -> list[str] | None:
    """The names of a `Sequence(ClassLabel)` / `List(ClassLabel)` column's ids, if it is one."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return names
    return None


def _sentences(dataset, path: str, shown: str, options: ReadOptions) -> tuple[list[Sentence], list[int]]:
    columns = list(dataset.column_names)
    words_key = _column(columns, options.tokens_field, TOKEN_COLUMNS, "words", "--tokens-field", shown)
    tags_key = _column(columns, options.tags_field, TAG_COLUMNS, "tags", "--tags-field", shown)
    document_key = next((name for name in DOCUMENT_COLUMNS if name in columns), None)
    names = _class_names(dataset.features.get(tags_key)) or options.label_names
    wanted = [words_key, tags_key] + ([document_key] if document_key else [])
    sentences: list[Sentence] = []
    empty: list[int] = []
    row = 0
    document = -1
    previous = object()  # the document column's value in the row before
    for batch in dataset.select_columns(wanted).iter(batch_size=_BATCH_ROWS):
        for index, (words, tags) in enumerate(zip(batch[words_key], batch[tags_key])):
            where = f"row {row}"
            if document_key:
                value = batch[document_key][index]
                if value != previous:
                    document += 1
                previous = value
            words, tags = _check_row(words, tags, words_key, tags_key, names, where, shown)
            row += 1
            if not words:
                empty.append(row - 1)
                continue
            if not document_key:
                document += 1
            sentences.append(Sentence(words, tags, document))
    if document_key:  # renumber: documents whose rows were all empty leave no gap
        numbers = {d: n for n, d in enumerate(dict.fromkeys(s.document for s in sentences))}
        for sentence in sentences:
            sentence.document = numbers[sentence.document]
    return sentences, empty


def _check_row(words, tags, words_key: str, tags_key: str, names: list[str] | None, where: str, shown: str) -> tuple[list[str], list[str]]:
    return words_and_tags(
        words, tags, words_key, tags_key, names, f"{where}: ", shown,
        names_hint=f" (the {tags_key!r} column is not a ClassLabel sequence)",
        names_fix=NAMES_FIX + ", or cast the column to Sequence(ClassLabel(names=[...]))",
    )  # fmt: skip
