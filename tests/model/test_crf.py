"""The optional CRF head: trained on whole tag sequences, decoded by nertune's one Viterbi (with learned
transitions, with or without the IOB2 constraint), saved as crf.safetensors, carried by the ONNX export,
and the same tags from evaluation, the PyTorch Tagger and the ONNX Tagger."""

from __future__ import annotations

import copy
import itertools
import json
import shutil

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from torchcrf import CRF

from nertune.data.conll import read_conll
from nertune.data.schemes import is_valid_iob2
from nertune.data.splits import build_labels
from nertune.errors import NertuneError
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.export.onnx import EXPORT_FILE, export_onnx
from nertune.model.crf import CRF_FILE, crf_scores, fits_tree, log_likelihood
from nertune.model.decode import decode
from nertune.model.load import MANIFEST, for_inference, load_for_training, load_tokenizer, load_trained, save_model
from nertune.model.loss import weighted_crf_loss, window_weights
from nertune.model.word_scores import build_windows
from nertune.tag.tagger import Tagger
from nertune.training.checkpoint import Checkpoints, RunState
from nertune.training.step import forward_backward
from tests.conftest import run_cli

LABELS = ["O", "B-A", "I-A", "B-B", "I-B"]
ID2LABEL = dict(enumerate(LABELS))


# ---- decoding with learned transitions ---------------------------------------------


def path_score(path, emissions, start, end, transitions) -> float:
    score = float(start[path[0]] + end[path[-1]]) + sum(float(emissions[t, i]) for t, i in enumerate(path))
    return score + sum(float(transitions[a, b]) for a, b in zip(path, path[1:]))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31), st.sampled_from([0.3, 1.0, 4.0]))
def test_crf_decode_is_the_best_path_by_brute_force(n_words, seed, sharpness):
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(n_words, len(LABELS), generator=generator) * sharpness
    crf = (
        torch.randn(len(LABELS), generator=generator),
        torch.randn(len(LABELS), generator=generator),
        torch.randn(len(LABELS), len(LABELS), generator=generator) * sharpness,
    )
    for constrain in (False, True):
        paths = [p for p in itertools.product(range(len(LABELS)), repeat=n_words) if not constrain or is_valid_iob2([LABELS[i] for i in p])]
        best = max(path_score(p, emissions, *crf) for p in paths)
        (tags,) = decode([emissions], ID2LABEL, constrain=constrain, crf=crf)
        found = [LABELS.index(t) for t in tags]
        assert found in [list(p) for p in paths]
        assert path_score(found, emissions, *crf) == pytest.approx(best, abs=1e-4)
    # All-zero CRF scores: exactly the softmax model's decoding, both ways.
    zero = (torch.zeros(len(LABELS)), torch.zeros(len(LABELS)), torch.zeros(len(LABELS), len(LABELS)))
    assert decode([emissions], ID2LABEL, True, zero) == decode([emissions], ID2LABEL, True)
    assert decode([emissions], ID2LABEL, False, zero) == decode([emissions], ID2LABEL, False)


def test_learned_transitions_change_an_already_valid_path():
    # The argmax O O is valid IOB2, but the CRF scores B-A -> I-A highly: the softmax shortcut would be wrong.
    emissions = torch.tensor([[1.0, 0.8, -3, -3, -3], [1.0, -3, 0.8, -3, -3]])
    transitions = torch.zeros(5, 5)
    transitions[1, 2] = 1.0
    crf = (torch.zeros(5), torch.zeros(5), transitions)
    assert decode([emissions], ID2LABEL) == [["O", "O"]]
    assert decode([emissions], ID2LABEL, crf=crf) == [["B-A", "I-A"]]
    assert decode([torch.zeros((0, 5))], ID2LABEL, crf=crf) == [[]]


# ---- the training loss ---------------------------------------------------------------


def test_crf_loss_packs_each_rows_labelled_words():
    torch.manual_seed(0)
    crf = CRF(len(LABELS), batch_first=True)
    logits = torch.randn(3, 7, len(LABELS))
    labels = torch.full((3, 7), -100)
    labels[0, [1, 2, 5]] = torch.tensor([1, 2, 0])  # gaps: later pieces of a word, [CLS], context pieces
    labels[2, [3]] = torch.tensor([3])  # row 1: no labelled word (adds nothing)
    weights = torch.tensor([0.5, 7.0, 2.0])
    got = weighted_crf_loss(crf, logits, labels, weights)
    row0 = -crf(logits[0, [1, 2, 5]][None], torch.tensor([[1, 2, 0]]), torch.ones((1, 3), dtype=torch.bool))
    row2 = -crf(logits[2, [3]][None], torch.tensor([[3]]), torch.ones((1, 1), dtype=torch.bool))
    torch.testing.assert_close(got, 0.5 * row0 + 2.0 * row2)
    empty = weighted_crf_loss(crf, logits, torch.full((3, 7), -100), weights)
    assert float(empty.detach()) == 0.0 and empty.requires_grad


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 6), st.integers(0, 2**31), st.sampled_from([0.5, 3.0, 12.0]))
def test_the_graphable_log_likelihood_is_torchcrfs(steps, rows, seed, sharpness):
    """model/crf.py's tree of matrix products against torchcrf's loop over the words run in float64: values and
    every gradient, rows of any length (1 included), T not a power of two, scores large enough that paths differ
    by thousands (float32 rounding then shows: torchcrf's own float32 loop is off by up to ~3e-4 there)."""
    generator = torch.Generator().manual_seed(seed)
    crf = CRF(len(LABELS), batch_first=True)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * sharpness)
    oracle = copy.deepcopy(crf).double()
    emissions = torch.randn(rows, steps, len(LABELS), generator=generator) * sharpness
    lengths = torch.randint(1, steps + 1, (rows,), generator=generator)
    lengths[0] = steps
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    tags = torch.randint(0, len(LABELS), (rows, steps), generator=generator)
    weights = torch.rand(rows, generator=generator, dtype=torch.float64)
    ours, exact = emissions.clone().requires_grad_(), emissions.double().requires_grad_()
    got, expected = log_likelihood(crf, ours, tags, mask), oracle(exact, tags, mask, reduction="none")
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-3)
    wrt, oracle_wrt = [ours, *crf.parameters()], [exact, *oracle.parameters()]
    grads = torch.autograd.grad((got * weights.float()).sum(), wrt)
    for a, b in zip(grads, torch.autograd.grad((expected * weights).sum(), oracle_wrt, allow_unused=True)):
        torch.testing.assert_close(a.double(), torch.zeros_like(a.double()) if b is None else b, rtol=1e-4, atol=5e-4)


def test_the_tree_stays_within_its_size():
    # [rows, words/2, labels^3] a level: CoNLL's 9 labels and OntoNotes' 37 fit at 16 windows of 64 words; 100 labels do not
    assert fits_tree(16, 64, 9) and fits_tree(16, 64, 37) and fits_tree(16, 128, 37)
    assert not fits_tree(16, 64, 100) and not fits_tree(4096, 128, 9)


def test_a_row_with_no_word_is_finite_and_weighs_nothing():
    crf = CRF(len(LABELS), batch_first=True)
    emissions = torch.randn(2, 4, len(LABELS), requires_grad=True)
    mask = torch.zeros((2, 4), dtype=torch.bool)
    mask[0, :2] = True
    tags = torch.zeros((2, 4), dtype=torch.long)
    got = log_likelihood(crf, emissions, tags, mask)
    (got * torch.tensor([1.0, 0.0])).sum().backward()
    assert torch.isfinite(got).all() and torch.isfinite(emissions.grad).all()
    assert float(emissions.grad[1].abs().max()) == 0.0 and float(emissions.grad[0, :2].abs().max()) > 0
    torch.testing.assert_close(got[0], crf(emissions[:1, :2], tags[:1, :2], mask[:1, :2])[()])


@pytest.mark.parametrize("max_tokens,pack", [(8192, False), (256, False), (8192, True)])  # one pass or several; packed rows
def test_crf_gradient_equals_the_literal_sentence_by_sentence_recipe(conll_files, max_tokens, pack):
    """Each sentence's CRF negative log-likelihood per word / sentences per step, summed: however the passes are cut."""
    train = read_conll(conll_files["train"])
    labels = build_labels([train])
    label2id = {label: i for i, label in enumerate(labels)}
    sentences = train.sentences[100:108]
    tokenizer = load_tokenizer("embedded-minilm")
    torch.manual_seed(0)
    model = load_for_training("embedded-minilm", labels, crf=True).eval()  # dropout off
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences])
    assert len(windows) == len(sentences)

    model.zero_grad(set_to_none=True)
    for window in windows:
        emissions = model(input_ids=torch.tensor([window.input_ids])).logits[0, window.first_pieces]
        nll = -model.crf(emissions[None], torch.tensor([window.labels]), torch.ones((1, len(window.labels)), dtype=torch.bool))
        (nll / (len(window.labels) * len(sentences))).backward()
    literal = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad(set_to_none=True)
    words = [len(s.words) for s in sentences]
    weights = window_weights(windows, words, "sentence", len(sentences), sum(words))
    forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), max_tokens, position_offset=0 if pack else None)
    fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert fast.keys() == literal.keys() and "crf.transitions" in fast
    assert float(literal["crf.transitions"].abs().sum()) > 0
    for name in literal:
        torch.testing.assert_close(fast[name], literal[name], rtol=1e-4, atol=1e-6)


# ---- a real CRF run: saved, loaded, exported, the same tags everywhere ------------------


@pytest.fixture(scope="module")
def crf_model(featured_model):
    return featured_model  # make train's recipe: the CRF with casing classes and context, as `make train` runs it


@pytest.fixture(scope="module")
def validation(conll_files):
    return read_conll(conll_files["validation"]).sentences[:12]


def test_the_crf_is_saved_beside_the_model_and_was_trained(crf_model):
    assert json.loads((crf_model / "config.json").read_text())["nertune_crf"] is True
    assert CRF_FILE in json.loads((crf_model / MANIFEST).read_text())["sha256"]
    with safe_open(str(crf_model / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("crf.")], "model.safetensors keeps the plain Hugging Face keys"
    with safe_open(str(crf_model / CRF_FILE), "pt") as f:
        assert set(f.keys()) == {"start_transitions", "end_transitions", "transitions"}
    assert "crf: true" in (crf_model / "recipe.yaml").read_text()
    # The initial CRF, drawn as the run drew it (seed 42, then the classifier, then the CRF) ...
    id2label = json.loads((crf_model / "config.json").read_text())["id2label"]
    labels = [id2label[str(i)] for i in range(len(id2label))]
    recorded = yaml.safe_load((crf_model / "recipe.yaml").read_text())
    set_seed(42)
    initial = crf_scores(
        load_for_training("embedded-minilm", labels, casing=recorded["casing"], context_pieces=recorded["context_pieces"], crf=True)
    )
    trained = crf_scores(load_trained(crf_model))
    # ... moved by the 4 Adam steps, each at most about the CRF's own learning rate (5e-3, decaying).
    for before, after in zip(initial, trained):
        moved = (after - before).abs()
        assert 0 < float(moved.max()) < 4 * 5e-3
        assert float((moved > 0).float().mean()) > 0.9


def test_evaluation_and_both_taggers_decode_with_the_crf(crf_model, validation, tmp_path):
    # A copy whose CRF strongly prefers a sentence to start B-PER I-PER: the tags show whether each path used it.
    model = load_trained(crf_model)
    tokenizer = load_tokenizer(str(crf_model))
    ids = model.config.label2id
    with torch.no_grad():
        model.crf.start_transitions[ids["B-PER"]] = 40.0
        model.crf.transitions[ids["B-PER"], ids["I-PER"]] = 40.0
    forced = tmp_path / "forced"
    save_model(model, tokenizer, forced)
    onnx_dir = tmp_path / "onnx"
    export_onnx(forced, onnx_dir)
    assert (onnx_dir / CRF_FILE).read_bytes() == (forced / CRF_FILE).read_bytes()
    assert CRF_FILE in json.loads((onnx_dir / EXPORT_FILE).read_text())["sha256"]

    words = [s.words for s in validation]
    documents = [s.document for s in validation]
    for directory in (crf_model, forced):
        evaluated = evaluate_sentences(load_trained(directory), tokenizer, validation, constrain=True)["predictions"]
        tagged = Tagger.load(directory, device="cpu", precision="fp32").tag_words_batch(words, documents=documents)
        assert tagged == evaluated
        assert all(is_valid_iob2(tags) and len(tags) == len(w) for tags, w in zip(tagged, words))
    onnx_tagger = Tagger.load(onnx_dir)
    assert onnx_tagger.backend == "onnxruntime"
    assert all(torch.equal(a, b) for a, b in zip(onnx_tagger.crf, crf_scores(model)))
    assert onnx_tagger.tag_words_batch(words, documents=documents) == tagged  # `tagged`: the forced model's
    assert all(tags[:2] == ["B-PER", "I-PER"][: len(tags)] for tags in tagged)
    # Without its CRF the same word scores decode otherwise: the transitions are what made the difference.
    plain = decode(Tagger.load(forced, device="cpu", precision="fp32").word_logits(words, documents), model.config.id2label, constrain=True)
    assert plain != tagged


def test_a_crf_model_without_its_crf_file_is_a_clear_error(crf_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(crf_model, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / CRF_FILE).unlink()
    result = run_cli("predict", str(copy), "--text", "EU rejects German call to boycott British lamb .")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {copy}: weight file {CRF_FILE} is missing")  # the manifest's check comes first
    (copy / MANIFEST).unlink()  # a directory without a manifest: the CRF's own check
    with pytest.raises(
        NertuneError, match=rf"config.json says the model has a CRF head but {CRF_FILE} is missing .* fix: copy the whole model"
    ):
        load_trained(copy)


def test_checkpoints_carry_the_crf(crf_model, tmp_path):
    """Resume restores the CRF with the rest of the weights (the checkpoint saves the whole module)."""
    model = load_trained(crf_model)
    saved = crf_scores(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = Accelerator(cpu=True)
    checkpoints = Checkpoints(tmp_path, 2, accelerator, model, optimizer, scheduler, {}, {})
    path = checkpoints.save(RunState())
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        assert {"crf.start_transitions", "crf.end_transitions", "crf.transitions"} <= set(f.keys())
    with torch.no_grad():
        for p in model.crf.parameters():
            p.zero_()
    checkpoints.restore(path, json.loads((path / "state.json").read_text()))
    assert all(torch.equal(a, b) for a, b in zip(crf_scores(model), saved))


def test_bf16_weights_keep_the_crf_in_fp32_and_score_as_fp32_does(crf_model, validation):
    """bf16 tagging casts the encoder only: a CRF path score is a sum over the sentence, which bf16 would round."""
    tokenizer = load_tokenizer(str(crf_model))
    full = evaluate_sentences(load_trained(crf_model), tokenizer, validation, constrain=True)
    model = for_inference(load_trained(crf_model), torch.bfloat16)
    assert model.classifier.weight.dtype == torch.bfloat16 and model.crf.transitions.dtype == torch.float32
    half = evaluate_sentences(model, tokenizer, validation, constrain=True)
    assert half["metrics"]["loss"] == pytest.approx(full["metrics"]["loss"], rel=0.05)
    assert half["metrics"]["f1"] == pytest.approx(full["metrics"]["f1"], abs=0.05)
    tagger = Tagger.load(crf_model, device="cpu", precision="bf16")
    assert tagger.precision == "bf16" and all(t.dtype == torch.float32 for t in tagger.crf)
    words, documents = [s.words for s in validation], [s.document for s in validation]
    tagged = tagger.tag_words_batch(words, constrain=True, documents=documents)
    pairs = [(a, b) for x, y in zip(tagged, full["predictions"]) for a, b in zip(x, y)]
    assert sum(a == b for a, b in pairs) >= 0.95 * sum(map(len, words))
