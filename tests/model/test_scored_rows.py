"""The last layer at the scored positions only (model/scored_rows.py): the whole layer's logits there, from
fewer rows through the layer, plain and packed, fp32 and bf16; models of another layout are left as they are.
The gradients are the whole layer's too (test_gradient.py checks those against the literal recipe's)."""

from __future__ import annotations

import contextlib
from copy import deepcopy

import pytest
import torch

from nertune.data.features import collate, model_inputs
from nertune.data.packing import pack, packed_logits
from nertune.model.loss import window_weights
from nertune.model.scored_rows import _INSTALLED, WORTH_IT, only_scored, packed_positions, scored
from nertune.model.word_scores import build_windows
from nertune.training import step
from nertune.training.speed.dropout import use_cheap_dropout
from nertune.training.step import forward_backward
from tests.conftest import training_windows


@pytest.fixture(scope="module")
def setup(conll_files):
    """The model and the windows of 32 train sentences with 16 pieces of document context a side."""
    model, tokenizer, sentences, _ = training_windows(conll_files, slice(200, 232), context_pieces=16)
    labels = [[model.config.label2id[t] for t in s.tags] for s in sentences]
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, labels, model.config, [s.document for s in sentences])
    return model, tokenizer, sentences, windows


@contextlib.contextmanager
def query_rows(model):
    """The rows (batch x positions) each call of the last layer's query projection gets, within the block."""
    seen = []
    query = model.base_model.encoder.layer[-1].attention.self.query
    hook = query.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[:-1].numel()))
    try:
        yield seen
    finally:
        hook.remove()


def at_first_pieces(logits: torch.Tensor, windows) -> torch.Tensor:
    return torch.cat([logits[row, w.first_pieces] for row, w in enumerate(windows)])


@pytest.mark.parametrize(("dtype", "attention"), [(None, "sdpa"), (None, "eager"), (torch.bfloat16, "sdpa")])
def test_scored_positions_get_the_whole_layers_logits_from_fewer_rows(setup, dtype, attention):
    model, tokenizer, _, windows = setup
    inputs = model_inputs(collate(windows, tokenizer.pad_token_id), "cpu")
    model.set_attn_implementation(attention)
    try:
        with query_rows(model) as seen, torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            full = model(**inputs).logits.float()
            with only_scored(model, [w.first_pieces for w in windows]):
                pruned = model(**inputs).logits.float()
    finally:
        model.set_attn_implementation("sdpa")
    rows, width = inputs["input_ids"].shape
    scored_pieces = sum(len(w.first_pieces) for w in windows)
    assert seen == [rows * width, scored_pieces]
    assert scored_pieces < WORTH_IT * rows * width
    expected, got = at_first_pieces(full, windows), at_first_pieces(pruned, windows)
    if dtype is None:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    else:  # bf16 rounds differently on other shapes
        torch.testing.assert_close(got, expected, atol=0.1, rtol=0.05)
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.98


def test_packed_rows_score_their_windows_first_pieces_as_the_whole_layer_does(setup):
    model, tokenizer, _, windows = setup
    inputs, unpack = pack(windows, tokenizer.pad_token_id, position_offset=0)
    positions = packed_positions([w.first_pieces for w in windows], unpack, *inputs["input_ids"].shape)
    with query_rows(model) as seen, torch.no_grad():
        full = packed_logits(model, inputs, unpack, "cpu")
        with only_scored(model, positions):
            pruned = packed_logits(model, inputs, unpack, "cpu")
    assert len(inputs["input_ids"]) < len(windows)  # several windows a row
    assert seen[1] < seen[0]
    torch.testing.assert_close(at_first_pieces(pruned, windows), at_first_pieces(full, windows), atol=1e-5, rtol=1e-5)


def test_a_pass_scored_at_most_of_its_positions_runs_the_whole_layer(conll_files):
    model, tokenizer, _, windows = training_windows(conll_files, slice(200, 232))
    windows = [max(windows, key=lambda w: len(w.first_pieces))]  # no context, no padding: most pieces are first pieces
    inputs = model_inputs(collate(windows, tokenizer.pad_token_id), "cpu")
    positions = [w.first_pieces for w in windows]
    assert sum(map(len, positions)) > WORTH_IT * inputs["input_ids"].numel()
    with query_rows(model) as seen, torch.no_grad(), only_scored(model, positions):
        model(**inputs)
    assert seen == [inputs["input_ids"].numel()]


@pytest.mark.parametrize("packed", [False, True])
def test_the_gradient_is_the_whole_layers(setup, packed, monkeypatch):
    model, tokenizer, sentences, windows = setup  # eval mode: no dropout, so the two gradients compare

    def gradient() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        words = [len(s.words) for s in sentences]
        weights = window_weights(windows, words, "sentence", len(sentences), sum(words))
        forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), 16384, position_offset=0 if packed else None)
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    with query_rows(model) as seen:
        pruned = gradient()
    monkeypatch.setattr(step, "only_scored", lambda *args, **kwargs: contextlib.nullcontext())
    with query_rows(model) as seen_whole:
        whole = gradient()
    assert sum(seen) < 0.6 * sum(seen_whole)
    assert pruned.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(pruned[name], whole[name], atol=1e-6, rtol=1e-4, msg=name)


def test_packed_positions_are_each_windows_first_pieces_in_its_row(setup):
    _, tokenizer, _, windows = setup
    inputs, unpack = pack(windows, tokenizer.pad_token_id, position_offset=0)
    rows, width = inputs["input_ids"].shape
    expected = [set() for _ in range(rows)]
    for i, window in enumerate(windows):
        for piece in window.first_pieces:
            flat = int(unpack[i, piece])
            expected[flat // width].add(flat % width)
            assert inputs["input_ids"].flatten()[flat] == window.input_ids[piece]
    got = packed_positions([w.first_pieces for w in windows], unpack, rows, width)
    assert [sorted(p) for p in expected] == got


def test_scored_lists_the_positions_flat_and_pads_each_row_with_its_last_one():
    positions = scored([[1, 3], [], [2]])
    assert positions.index.tolist() == [[1, 3], [0, 0], [2, 2]]
    assert positions.rows.tolist() == [0, 0, 2]
    assert positions.columns.tolist() == [1, 3, 2]
    assert positions.slots.tolist() == [0, 1, 0]
    assert scored([[], []]) is None


@pytest.mark.parametrize("kind", ["mpnet", "roberta-prelayernorm"])
def test_a_model_of_another_layout_computes_every_position(kind):
    """MPNet's attention has other names; the pre-norm RoBERTa has BERT's names plus norms the cut layer would skip."""
    from transformers import CONFIG_MAPPING, AutoModelForTokenClassification  # noqa: PLC0415

    torch.manual_seed(0)
    sizes = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    model = AutoModelForTokenClassification.from_config(CONFIG_MAPPING[kind](**sizes, num_labels=3)).eval()
    ids = torch.randint(5, 64, (2, 9))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with only_scored(model, [[1], [3]]):
            kept = model(input_ids=ids).logits
    layer = model.base_model.encoder.layer[-1]
    assert getattr(layer, _INSTALLED) is False and "forward" not in vars(layer)
    assert torch.equal(full, kept)


def test_a_copy_of_the_model_runs_its_own_last_layer_and_other_models_ignore_the_positions(setup):
    model, tokenizer, _, windows = setup
    inputs = model_inputs(collate(windows, tokenizer.pad_token_id), "cpu")
    positions = [w.first_pieces for w in windows]
    with torch.no_grad(), only_scored(model, positions):
        model(**inputs)  # installed
    copy = deepcopy(model)
    with torch.no_grad():
        copy.base_model.encoder.layer[-1].output.dense.weight.mul_(2)
        changed = copy(**inputs).logits
        with only_scored(model, positions), query_rows(copy) as seen:  # positions for `model`: the copy runs whole
            whole = copy(**inputs).logits
        with only_scored(copy, positions):
            cut = copy(**inputs).logits
        original = model(**inputs).logits
    assert seen == [inputs["input_ids"].numel()]
    assert torch.equal(changed, whole)
    assert not torch.allclose(at_first_pieces(changed, windows), at_first_pieces(original, windows))
    torch.testing.assert_close(at_first_pieces(cut, windows), at_first_pieces(changed, windows), atol=1e-5, rtol=1e-5)


def test_training_mode_with_cheap_dropout_takes_the_cut_layer(conll_files):
    """Dropout on, as the loop trains (the cheap-dropout attention spells the math out): a finite gradient
    for every parameter, from fewer rows through the last layer."""
    model, tokenizer, sentences, _ = training_windows(conll_files, slice(300, 316), context_pieces=16)
    labels = [[model.config.label2id[t] for t in s.tags] for s in sentences]
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, labels, model.config, [s.document for s in sentences])
    use_cheap_dropout(model)
    model.train()
    words = [len(s.words) for s in sentences]
    with query_rows(model) as seen:
        forward_backward(
            model, windows, window_weights(windows, words, "sentence", 16, sum(words)), tokenizer.pad_token_id, torch.device("cpu"), 16384
        )
    assert seen and seen[0] == sum(len(w.first_pieces) for w in windows)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
