"""NerPipeline: transformers' token-classification pipeline returning exactly the Tagger's entities, for softmax,
casing, CRF and document-context models, on real CoNLL-2003 test text; what the plain pipeline does instead; and
the model card that says so."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import groupby
from pathlib import Path

import pytest
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

from nertune.data.conll import read_conll
from nertune.data.words import sentence_words
from nertune.errors import NertuneError
from nertune.model.crf import CONFIG_FIELD as CRF_FIELD
from nertune.model.load import load_tokenizer, load_trained, save_model
from nertune.tag.pipeline import NerPipeline, ner_pipeline
from nertune.tag.tagger import Tagger
from tests.conftest import _cli_ok, shared_dir

KEYS = {"entity_group", "score", "word", "start", "end"}


@pytest.fixture(scope="session")
def casing_crf_model(tmp_path_factory) -> Path:
    """minilm-casing-crf cut to one epoch on 128 real sentences, at 5e-4 in packed steps (about 40 s on 2 cores):
    enough that the casing rows and the CRF transitions move and the model tags names."""
    return shared_dir(
        tmp_path_factory,
        "pipeline-casing-crf",
        lambda out: _cli_ok(
            "train",
            "--recipe",
            "minilm-casing-crf",
            "--epochs",
            "1",
            "--max-train-sentences",
            "128",
            "--learning-rate",
            "5e-4",
            "--pack",
            "--max-eval-sentences",
            "16",
            "--output-dir",
            str(out),
            "--no-progress",
            "--sample",
            "",
        ),
    )


@pytest.fixture(scope="session")
def casing_model(casing_crf_model, tmp_path_factory) -> Path:
    """casing_crf_model saved without its CRF head: a casing-only softmax model with the very same encoder and word
    scores, so any difference between the two is the CRF's (the softmax/CRF split, with no second training run)."""

    def build(out: Path) -> None:
        model = load_trained(casing_crf_model)
        del model.crf
        delattr(model.config, CRF_FIELD)
        save_model(model, load_tokenizer(str(casing_crf_model)), out)

    return shared_dir(tmp_path_factory, "pipeline-casing", build)


@pytest.fixture(scope="module")
def texts(conll_files) -> list[str]:
    """200 real CoNLL-2003 test sentences, each as raw text (its words joined by spaces)."""
    return [" ".join(s.words) for s in read_conll(conll_files["test"]).sentences[:200]]


@lru_cache(maxsize=None)
def tagger_entities(model_dir: Path, texts: tuple[str, ...], constrain: bool = True) -> list[list[dict]]:
    # fp32 as the pipeline's model loads: bf16 (auto on a CPU that has it) rounds differently
    return Tagger.load(model_dir, device="cpu", precision="fp32").tag_batch(list(texts), constrain=constrain)


def plain_entities(model_dir: Path, texts: list[str]) -> list[list[dict]]:
    return pipeline("token-classification", model=str(model_dir), aggregation_strategy="first", device="cpu")(texts)


def spans(found: list[dict]) -> list[tuple[str, int, int]]:
    return [(e.get("entity_group", e.get("type")), e["start"], e["end"]) for e in found]


def assert_tagger_entities(got: list[list[dict]], want: list[list[dict]], texts: list[str]) -> None:
    assert len(got) == len(want) == len(texts)
    for text, g, w in zip(texts, got, want):
        assert spans(g) == spans(w), text
        assert [e["score"] for e in g] == pytest.approx([e["score"] for e in w], abs=1e-5), text
        for e in g:
            assert set(e) == KEYS and e["word"] == text[e["start"] : e["end"]]


def comparable(text: str) -> bool:
    """One Treebank sentence whose every word is also one word to the plain pipeline (which splits at any
    punctuation character): there the two see the same windows and words, so only the model's inputs and
    head can make them differ."""
    sentences = sentence_words(text)
    return len(sentences) == 1 and all(w.text.isascii() and (w.text.isalnum() or len(w.text) == 1) for w in sentences[0])


# ---- NerPipeline == Tagger ------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_model", "casing_model", "casing_crf_model", "featured_model"])
def test_pipeline_returns_the_taggers_entities(name, request, texts):
    model_dir = request.getfixturevalue(name)
    ner = pipeline("token-classification", model=str(model_dir), pipeline_class=NerPipeline, device="cpu")
    got = ner(texts)
    want = tagger_entities(model_dir, tuple(texts))
    assert sum(map(len, want)) >= 5, "the model should tag something, or equality says little"
    assert_tagger_entities(got, want, texts)
    assert ner(texts[5]) == got[5]  # one str in, one list of entities out


def test_pipeline_gives_each_text_its_document_context(featured_model, conll_files):
    sentences = read_conll(conll_files["test"]).sentences[:200]
    documents = [[" ".join(s.words) for s in group] for _, group in groupby(sentences, key=lambda s: s.document)]
    texts = ["\n".join(lines) for lines in documents]
    ner = pipeline("token-classification", model=str(featured_model), pipeline_class=NerPipeline, device="cpu")
    whole = ner(texts)
    assert_tagger_entities(whole, tagger_entities(featured_model, tuple(texts)), texts)
    # The same lines tagged one text each (no neighbours): the context must have changed something.
    changed = 0
    for lines, found in zip(documents, whole):
        alone, offset = [], 0
        for line, entities in zip(lines, ner(lines)):
            alone += [(e["entity_group"], e["start"] + offset, e["end"] + offset) for e in entities]
            offset += len(line) + 1
        changed += alone != spans(found)
    assert changed >= 1


def test_pipeline_from_model_objects_and_ner_pipeline(casing_crf_model, texts):
    texts = texts[:60]
    want = tagger_entities(casing_crf_model, tuple(texts))
    # Loaded by plain transformers: no CRF on the model, so NerPipeline attaches the one in its folder.
    model = AutoModelForTokenClassification.from_pretrained(casing_crf_model, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(casing_crf_model)
    assert getattr(model, "crf", None) is None
    ner = pipeline("token-classification", model=model, tokenizer=tokenizer, pipeline_class=NerPipeline, device="cpu")
    assert ner.model.crf is not None
    assert_tagger_entities(ner(texts), want, texts)
    # Loaded by nertune (CRF attached), several texts per Tagger call.
    assert_tagger_entities(ner_pipeline(casing_crf_model, device="cpu", batch_size=8)(texts), want, texts)
    # A CRF model whose folder is unknown cannot be tagged as trained: an error, never a silent softmax.
    model = AutoModelForTokenClassification.from_pretrained(casing_crf_model, use_safetensors=True)
    model.name_or_path = model.config._name_or_path = "not/a/folder"
    with pytest.raises(NertuneError, match="CRF head"):
        pipeline("token-classification", model=model, tokenizer=tokenizer, pipeline_class=NerPipeline, device="cpu")


def test_pipeline_options(tiny_model, texts):
    texts = texts[:60]
    ner = pipeline("token-classification", model=str(tiny_model), pipeline_class=NerPipeline, device="cpu")
    assert_tagger_entities(ner(texts, constrain=False), tagger_entities(tiny_model, tuple(texts), False), texts)
    assert any(e["entity_group"] == "LOC" for found in ner(texts) for e in found)
    assert not any(e["entity_group"] == "LOC" for found in ner(texts, ignore_labels=["LOC"]) for e in found)
    assert ner(texts[:3], aggregation_strategy="first") == ner(texts[:3])
    for bad in ({"aggregation_strategy": "simple"}, {"is_split_into_words": True}, {"stride": 16}):
        with pytest.raises(ValueError):
            ner(texts[0].split() if "is_split_into_words" in bad else texts[0], **bad)


# ---- what the plain pipeline does instead ---------------------------------------------


def test_plain_pipeline_differs_only_in_words_and_windows_for_a_softmax_model(tiny_model, texts):
    plain = plain_entities(tiny_model, texts)
    raw = tagger_entities(tiny_model, tuple(texts), False)
    same = [i for i, text in enumerate(texts) if comparable(text)]
    assert len(same) >= 80
    for i in same:  # same windows, words and inputs: the same tags and scores as the unconstrained Tagger
        assert spans(plain[i]) == spans(raw[i]), texts[i]
        assert [float(e["score"]) for e in plain[i]] == pytest.approx([e["score"] for e in raw[i]], abs=1e-4)
    # Elsewhere its own word splitting (AL-AIN, Jean-Luc, J.) does change entities.
    assert sum(spans(p) != spans(r) for p, r in zip(plain, raw)) >= 1


def test_plain_pipeline_ignores_casing_and_the_crf(casing_model, casing_crf_model, texts):
    with_crf, without = tagger_entities(casing_crf_model, tuple(texts)), tagger_entities(casing_model, tuple(texts))
    plain_crf, plain_softmax = plain_entities(casing_crf_model, texts), plain_entities(casing_model, texts)
    # It tags differently from the Tagger for the CRF model ...
    assert sum(spans(p) != spans(t) for p, t in zip(plain_crf, with_crf)) >= 1
    # ... and never looks at crf.safetensors: the CRF and softmax twins get identical output, though the CRF changes the Tagger's.
    assert [spans(p) for p in plain_crf] == [spans(p) for p in plain_softmax]
    assert [float(e["score"]) for p in plain_crf for e in p] == [float(e["score"]) for p in plain_softmax for e in p]
    assert sum(spans(a) != spans(b) for a, b in zip(with_crf, without)) >= 1
    # Where windows and words are the same, only the casing token types it leaves at 0 can change the casing model's
    # output (for the softmax tiny_model the two agree there to 1e-4): different tags or scores on many such texts.
    raw = tagger_entities(casing_model, tuple(texts), False)
    differ = [
        spans(plain_softmax[i]) != spans(raw[i])
        or any(abs(float(a["score"]) - b["score"]) > 1e-3 for a, b in zip(plain_softmax[i], raw[i]))
        for i, text in enumerate(texts)
        if comparable(text) and raw[i]
    ]
    assert sum(differ) >= 10, f"{sum(differ)} of {len(differ)}"


# ---- the model card ---------------------------------------------------------------------


def test_card_names_the_features_and_what_the_plain_pipeline_misses(featured_model, tiny_model):
    card = (featured_model / "README.md").read_text(encoding="utf-8")
    for line in (
        "- casing: true",
        "- context_pieces: 16",
        "- crf: true",
        "- crf_learning_rate: 0.005",
        "- dropout: none",
        "- learning_rate: 0.0001",
        "- train_batch_size: 1",
        "- gradient_accumulation_steps: 16",
        "- accumulation semantics: sentence",
        "warmup ratio 0.1",
        "- lr_scheduler_type: linear",
        "- num_epochs: 1",
        "- seed: 42",
        "- max length:",
        "max_train_sentences: 64",
        "pack false, group_by_length true",
    ):
        assert line in card, line
    for claim in (
        "ignores the casing classes",
        "token type 0",
        "no document context",
        "ignores the CRF",
        "crf.safetensors",
        'pipeline("token-classification", model=".", pipeline_class=NerPipeline)',
        "from nertune.tag.pipeline import NerPipeline",
    ):
        assert claim in card, claim
    softmax = (tiny_model / "README.md").read_text(encoding="utf-8")
    assert "- casing: false" in softmax and "- crf: false" in softmax and "- context_pieces: 0" in softmax
    assert "softmax head and reads no casing or context" in softmax and "pipeline_class=NerPipeline" in softmax
    assert "ignores the CRF" not in softmax and "ignores the casing classes" not in softmax


def test_the_cards_pipeline_code_runs_in_the_run_directory(featured_model, monkeypatch):
    card = (featured_model / "README.md").read_text(encoding="utf-8")
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", card, re.S) if "pipeline_class=NerPipeline" in block]
    monkeypatch.chdir(featured_model)
    scope: dict = {}
    exec(code.replace('model="."', 'model=".", device="cpu"'), scope)
    text = "George Washington went to Washington."
    assert isinstance(scope["ner"], NerPipeline)
    assert spans(scope["ner"](text)) == spans(Tagger.load(".", device="cpu", precision="fp32")(text))  # as pipeline() loads it
