"""Every format to every format and back, and a tiny run trained from each format, on the same real
CoNLL-2003 sentences: the entities, the label set and the scores' support must be CoNLL's."""

from __future__ import annotations

import pytest

import nertune
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.formats import read_data
from nertune.data.writers import WRITE_FORMATS, write_sentences
from tests.own_data import entity_counts, write_format

pytest.importorskip("datasets")
pytest.importorskip("spacy")

READ_FORMATS = ("conll", "tokens", "spans", "doccano", "label_studio", "hf", "spacy", "brat")


@pytest.fixture(scope="module")
def sentences():
    return read_conll(conll2003_files()["train"]).sentences[:40]


@pytest.mark.parametrize("source", READ_FORMATS)
def test_each_format_converts_to_each_and_back(tmp_path, sentences, source):
    read = read_data(write_format(source, sentences, tmp_path / source)).sentences
    assert entity_counts(read) == entity_counts(sentences)
    for target in WRITE_FORMATS:
        out = tmp_path / f"out-{target}.{'conll' if target == 'conll' else 'jsonl'}"
        write_sentences(read, out, target)
        again = read_data(out).sentences
        assert entity_counts(again) == entity_counts(sentences), f"{source} -> {target}"
        flat = [(w, t) for s in again for w, t in zip(s.words, s.tags)]
        assert flat == [(w, t) for s in read for w, t in zip(s.words, s.tags)], f"{source} -> {target}: words and tags"


@pytest.fixture(scope="module")
def conll_run(tmp_path_factory, sentences):
    folder = tmp_path_factory.mktemp("conll-run")
    return _train(write_format("conll", sentences, folder / "train"), folder)


def _train(train, folder):
    validation = write_format("conll", read_conll(conll2003_files()["validation"]).sentences[:24], folder / "validation")
    return nertune.train(
        train=str(train), validation=str(validation), epochs=1, grad_accum=4, progress=False, output_dir=str(folder / "run")
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", ["tokens", "spans", "label_studio", "hf", "spacy", "brat"])
def test_a_tiny_run_from_each_format_learns_the_conll_runs_labels(tmp_path, sentences, conll_run, source):
    metrics = _train(write_format(source, sentences, tmp_path / source), tmp_path)
    assert metrics["labels"] == conll_run["labels"]
    assert metrics["train_sentences"] >= len(sentences)  # a span format may cut a sentence in two, never fewer
    support = {kind: v["support"] for kind, v in metrics["validation"]["per_type"].items()}
    assert support == {kind: v["support"] for kind, v in conll_run["validation"]["per_type"].items()}
