"""Decoding and the Tagger: valid IOB2, whole-word entities, exact offsets, any length."""

from __future__ import annotations

import gc
import itertools
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForTokenClassification, AutoTokenizer

from nertune.data.conll import read_conll
from nertune.data.schemes import is_valid_iob2
from nertune.data.words import split_words
from nertune.errors import NertuneError
from nertune.model.decode import allowed_transitions, decode, viterbi_batch
from nertune.tag.tagger import TaggedWord, Tagger, entities

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
ID2LABEL = dict(enumerate(LABELS))


def word_logits(max_words: int, labels: int = len(LABELS)):
    """Random word logits; `sharpness` ranges from near-uniform to near-one-hot rows."""
    return st.tuples(st.integers(0, max_words), st.integers(0, 2**31), st.sampled_from([0.3, 1.0, 4.0])).map(
        lambda a: torch.randn(a[0], labels, generator=torch.Generator().manual_seed(a[1])) * a[2]
    )


# ---- decode ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(word_logits(12))
def test_constrained_output_is_always_valid_iob2(logits):
    (tags,) = decode([logits], ID2LABEL, constrain=True)
    assert len(tags) == logits.shape[0]
    assert is_valid_iob2(tags)


@settings(max_examples=200, deadline=None)
@given(word_logits(12))
def test_constrained_equals_argmax_when_argmax_is_valid(logits):
    (raw,) = decode([logits], ID2LABEL, constrain=False)
    (constrained,) = decode([logits], ID2LABEL, constrain=True)
    assert raw == [LABELS[i] for i in logits.argmax(-1)]
    if is_valid_iob2(raw):
        assert constrained == raw
    else:
        assert constrained != raw


@settings(max_examples=100, deadline=None)
@given(word_logits(4, labels=5))
def test_viterbi_is_the_best_valid_path_by_brute_force(logits):
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    log_probs = logits.log_softmax(-1)
    start, allowed = allowed_transitions(tuple(labels))
    best = max(
        (path for path in itertools.product(range(5), repeat=logits.shape[0]) if is_valid_iob2([labels[i] for i in path])),
        key=lambda path: sum(float(log_probs[t, i]) for t, i in enumerate(path)),
    )
    (found,) = viterbi_batch(log_probs.double().numpy(), [len(log_probs)], start, allowed)
    score = lambda path: sum(float(log_probs[t, i]) for t, i in enumerate(path))  # noqa: E731
    assert is_valid_iob2([labels[i] for i in found])
    assert score(found) == pytest.approx(score(best), abs=1e-4)


def step_by_step_viterbi(log_probs: np.ndarray, start: np.ndarray, allowed: np.ndarray, crf) -> list[int]:
    """The oracle: one sequence at a time, one NumPy step per word (nertune's Viterbi before it was batched)."""
    if len(log_probs) == 0:
        return []
    transition, first, last = np.where(allowed, 0.0, -np.inf), np.where(start, 0.0, -np.inf), 0.0
    if crf is not None:
        crf_start, crf_end, crf_transitions = (x.double().numpy() for x in crf)
        first, transition, last = first + crf_start, transition + crf_transitions, crf_end
    score, backpointers = log_probs[0] + first, []
    for t in range(1, len(log_probs)):
        candidates = score[:, None] + transition
        best_prev = candidates.argmax(axis=0)
        backpointers.append(best_prev)
        score = candidates[best_prev, np.arange(len(best_prev))] + log_probs[t]
    path = [int((score + last).argmax())]
    for best_prev in reversed(backpointers):
        path.append(int(best_prev[path[-1]]))
    return path[::-1]


@settings(max_examples=100, deadline=None)
@given(st.lists(word_logits(30), min_size=1, max_size=9), st.integers(0, 2**31), st.booleans(), st.booleans())
def test_a_batch_decodes_each_sequence_as_a_step_by_step_viterbi_over_it_alone(batch, seed, with_crf, round_scores):
    """The batched Viterbi steps the sequences together, longest first: each gets the path, ties included, of a
    step-by-step Viterbi over that sequence alone (whose optimality the brute-force tests check)."""
    generator = torch.Generator().manual_seed(seed)
    crf = (torch.randn(9, generator=generator), torch.randn(9, generator=generator), torch.randn(9, 9, generator=generator))
    if round_scores:  # many equal scores: ties must break the same way
        batch, crf = [x.round() for x in batch], tuple(x.round() for x in crf)
    crf = crf if with_crf else None
    start, allowed = allowed_transitions(tuple(LABELS))
    for constrain in (True, False):
        together = decode(batch, ID2LABEL, constrain, crf)
        if not constrain:
            start, allowed = np.ones(9, dtype=bool), np.ones((9, 9), dtype=bool)
        if constrain or crf is not None:
            alone = [[LABELS[i] for i in step_by_step_viterbi(x.log_softmax(-1).double().numpy(), start, allowed, crf)] for x in batch]
            if crf is None:  # a valid argmax is kept as it is: the Viterbi's path only where it is invalid
                argmax = [[LABELS[i] for i in x.log_softmax(-1).argmax(-1).tolist()] for x in batch]
                alone = [raw if is_valid_iob2(raw) else path for raw, path in zip(argmax, alone)]
        else:
            alone = [[LABELS[i] for i in x.argmax(-1).tolist()] for x in batch]
        assert together == alone


def test_a_long_sequence_among_many_short_ones_decodes_in_the_memory_of_their_words():
    """No padding to the longest: 2,000 sentences of 3 words beside one of 20,000 would pad to 2.9 GB of scores."""
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(20_000, 9, generator=generator)] + [torch.randn(3, 9, generator=generator) for _ in range(2_000)]
    crf = (torch.zeros(9), torch.zeros(9), torch.randn(9, 9, generator=generator))
    tracemalloc.start()
    try:
        tags = decode(logits, ID2LABEL, constrain=True, crf=crf)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(x) for x in tags] == [len(x) for x in logits] and all(is_valid_iob2(x) for x in tags)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_an_i_after_o_is_repaired_to_the_likelier_valid_sequence():
    # Raw argmax: O I-PER — invalid. Valid options: B-PER B/I… the model's second choice decides.
    logits = torch.full((2, len(LABELS)), -5.0)
    logits[0, LABELS.index("O")] = 2.0
    logits[0, LABELS.index("B-PER")] = 1.5
    logits[1, LABELS.index("I-PER")] = 3.0
    assert decode([logits], ID2LABEL, constrain=False) == [["O", "I-PER"]]
    assert decode([logits], ID2LABEL, constrain=True) == [["B-PER", "I-PER"]]
    assert decode([torch.zeros((0, len(LABELS)))], ID2LABEL) == [[]]


def test_an_i_of_another_type_is_never_kept():
    logits = torch.full((2, len(LABELS)), -5.0)
    logits[0, LABELS.index("B-ORG")] = 3.0
    logits[1, LABELS.index("I-PER")] = 3.0
    logits[1, LABELS.index("I-ORG")] = 2.9
    assert decode([logits], ID2LABEL) == [["B-ORG", "I-ORG"]]


# ---- entities from tagged words ---------------------------------------------------


def test_entities_are_whole_words_and_follow_conlleval_chunking():
    text = "Peter Blackburn of EU met U.S. envoy"
    spans = split_words(text)
    tags = ["B-PER", "I-PER", "O", "I-ORG", "I-LOC", "B-LOC", "I-LOC"]
    words = [TaggedWord(w.text, w.start, w.end, t, 0.5 + 0.1 * i) for i, (w, t) in enumerate(zip(spans, tags))]
    found = entities(text, words)
    assert [(e["text"], e["type"]) for e in found] == [("Peter Blackburn", "PER"), ("EU", "ORG"), ("met", "LOC"), ("U.S. envoy", "LOC")]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in found)
    assert found[0]["score"] == pytest.approx(0.55)  # mean probability of the words' chosen tags


# ---- the Tagger on a real (tiny) model ----------------------------------------------


@pytest.fixture(scope="module")
def tagger(tiny_model):
    return Tagger.load(tiny_model, device="cpu", precision="fp32")  # compared with plain transformers in fp32


def check_entities(text: str, found: list[dict], labels) -> None:
    starts = {w.start for w in split_words(text)}
    ends = {w.end for w in split_words(text)}
    previous_end = 0
    for e in found:
        assert set(e) == {"text", "type", "start", "end", "score"}
        assert e["text"] == text[e["start"] : e["end"]]
        assert e["start"] in starts and e["end"] in ends, "entities are made of whole words"
        assert e["start"] >= previous_end, "entities never overlap"
        assert f"B-{e['type']}" in labels and 0 < e["score"] <= 1
        previous_end = e["end"]


def test_tagger_offsets_slice_the_input(tagger):
    texts = [
        "EU rejects German call to boycott British lamb. Peter Blackburn went to the U.S. on Monday.",
        "  Café in Zürich\n\nBritish 東京 lamb 😀 Paris👍🏽\tnaïve  ",
        "",
        "   \n\t ",
        "BRUSSELS 1996-08-22\nThe European Commission said on Thursday it disagreed with German advice.",
    ]
    results = tagger.tag_batch(texts)
    assert len(results) == len(texts) and results[2] == [] and results[3] == []
    assert any(results), "the tiny model tags something"
    for text, found in zip(texts, results):
        check_entities(text, found, tagger.label2id)
    # Batching does not change what is found.
    one_by_one = [tagger(t) for t in texts]
    assert [[(e["start"], e["end"], e["type"]) for e in r] for r in results] == [
        [(e["start"], e["end"], e["type"]) for e in r] for r in one_by_one
    ]


def test_tag_words_gives_one_tag_per_word_whatever_the_words(tagger):
    words = ["EU", "", " ", "\u200b", "😀", "東京", "U.S.", "Bre-X", "lamb", "."]
    tags = tagger.tag_words(words)
    assert len(tags) == len(words) and all(t in tagger.label2id for t in tags)
    assert tagger.tag_words([]) == []
    assert [len(t) for t in tagger.tag_words_batch([["a"], [], ["b", "c"]])] == [1, 0, 2]
    with pytest.raises(NertuneError, match="list of words"):
        tagger.tag_words("EU rejects German call")
    with pytest.raises(NertuneError, match="expected text"):
        tagger.tag_batch([["EU"]])


def test_long_input_every_word_tagged_and_entities_beyond_the_first_window(tagger):
    sentence = "EU rejects German call to boycott British lamb ."
    words = (sentence + " ") * 230  # 2,070 words, over 2,000 wordpieces: five windows
    words = words.split()
    assert len(words) > 2000
    pieces = tagger.tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids()
    first_piece = {w: i for i, w in reversed(list(enumerate(pieces)))}
    tags = tagger.tag_words(words)
    assert len(tags) == len(words)
    assert any(t != "O" and first_piece[i] > 512 for i, t in enumerate(tags)), "entities found past the first 512 wordpieces"
    assert any(t != "O" and first_piece[i] > 1800 for i, t in enumerate(tags))
    # Raw text of the same length: every sentence tagged, offsets exact to the end.
    text = " ".join(words)
    found = tagger(text)
    check_entities(text, found, tagger.label2id)
    assert found and found[-1]["start"] > len(text) - len(sentence)


def test_word_tags_agree_with_plain_transformers_first_subword_argmax(tagger, tiny_model, conll_files):
    """Tagger (unconstrained) == the model's first-subword argmax computed with transformers alone;
    constrained differs only in sentences whose raw argmax was invalid IOB2, and is valid there."""
    model = AutoModelForTokenClassification.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    sentences = read_conll(conll_files["test"]).sentences[:80]
    raw = tagger.tag_words_batch([s.words for s in sentences], constrain=False)
    constrained = tagger.tag_words_batch([s.words for s in sentences], constrain=True)
    compared = 0
    for sentence, tags, fixed in zip(sentences, raw, constrained):
        encoding = tokenizer(sentence.words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**encoding).logits[0]
        first = {}
        for position, word in enumerate(encoding.word_ids()):
            if word is not None and word not in first:
                first[word] = position
        for index, tag in enumerate(tags):
            top2 = logits[first[index]].topk(2).values
            if top2[0] - top2[1] > 1e-4:  # skip exact ties, where float noise may pick either
                assert tag == model.config.id2label[int(logits[first[index]].argmax())]
                compared += 1
        if is_valid_iob2(tags):
            assert fixed == tags
        else:
            assert is_valid_iob2(fixed)
    assert compared > 0.99 * sum(len(s.words) for s in sentences)


def test_auto_precision_is_bf16_where_the_cpu_has_it_and_tags_as_fp32_does(tagger, tiny_model, conll_files, monkeypatch):
    monkeypatch.delenv("NERTUNE_CPU_BF16", raising=False)
    for flags, expected, max_tokens in (("fpu avx2 avx512f amx_bf16", "bf16", 2048), ("fpu avx2", "fp32", 1024)):
        monkeypatch.setattr("nertune.machine._cpuinfo", lambda flags=flags: f"model name\t: test\nflags\t\t: {flags}\n")
        auto = Tagger.load(tiny_model, device="cpu")
        assert (auto.precision, auto.max_tokens) == (expected, max_tokens)  # bf16: AMX tiles like larger passes
        assert {p.dtype for p in auto.model.parameters()} == {torch.bfloat16 if expected == "bf16" else torch.float32}
    monkeypatch.setenv("NERTUNE_CPU_BF16", "on")  # emulated on a CPU without bf16: the same path, slower
    forced = Tagger.load(tiny_model, device="cpu")
    assert forced.precision == "bf16" and {p.dtype for p in forced.model.parameters()} == {torch.bfloat16}
    words = [s.words for s in read_conll(conll_files["validation"]).sentences[:80]]
    half, full = forced.tag_words_batch(words), tagger.tag_words_batch(words)
    pairs = [(a, b) for x, y in zip(half, full, strict=True) for a, b in zip(x, y, strict=True)]
    assert sum(a == b for a, b in pairs) >= 0.97 * sum(map(len, words))
    assert half != [["O"] * len(w) for w in words]  # it tags something
    monkeypatch.setenv("NERTUNE_CPU_BF16", "off")
    assert Tagger.load(tiny_model, device="cpu").precision == "fp32"
    with pytest.raises(NertuneError, match="unknown precision 'fp16'"):
        Tagger.load(tiny_model, device="cpu", precision="fp16")


def test_no_garbage_collection_runs_while_a_batch_is_tagged(tagger, conll_files):
    """A full collection walks the whole process (torch, transformers, the model): collector.py pauses it."""
    texts = [" ".join(s.words) for s in read_conll(conll_files["test"]).sentences[:300]]
    collections = []

    def record(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()  # counts back to zero: a collection the call's first allocation could set off before the pause is not its
    gc.callbacks.append(record)
    try:
        results = tagger.tag_batch(texts)
        during = list(collections)
        # Able to fail: the same amount of allocation outside a pause does set collections off.
        _ = [[TaggedWord(w, 0, 1, "O", 0.5) for w in t.split()] for t in texts * 3]
    finally:
        gc.callbacks.remove(record)
    # At most one: the young objects' collection the pause put off, run by the first allocation after it (~25 without it).
    assert len(results) == len(texts) and len(during) <= 1
    assert gc.isenabled() and len(collections) > len(during) + 1
