"""The accuracy levers beyond the model's inputs: distillation, weight averaging, train + validation.

The CRF's marginals against enumerating every tag sequence, the soft losses against the hard ones they
generalise, teachers' probabilities averaged and refused when their labels differ, the average of kept
epochs, a short run that learns from a teacher and ends averaged, one trained on train + validation, and
cross-fitted teachers (a fold held out, taught by the teacher that never saw it)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torchcrf import CRF

from nertune.data.conll import read_conll
from nertune.data.splits import build_labels, document_folds, load_splits
from nertune.errors import NertuneError
from nertune.model.crf import log_marginals
from nertune.model.load import load_for_training, load_tokenizer, load_trained, model_labels
from nertune.model.loss import weighted_crf_soft_loss, weighted_soft_loss, weighted_token_loss
from nertune.model.word_scores import sentence_word_logits
from nertune.training.api import train
from nertune.training.averaging import keep_epoch, kept_epochs, load_average
from nertune.training.distill import attach_teacher, teacher_probabilities, word_probabilities
from nertune.training.recipe import load_recipe
from nertune.training.step import forward_backward
from tests.conftest import training_windows


@pytest.mark.parametrize("crf", [False, True])
def test_a_step_taught_its_own_gold_tags_as_one_hot_targets_is_the_plain_step(conll_files, crf):
    model, tokenizer, sentences, windows = training_windows(conll_files, slice(0, 16), crf=crf)
    weights = [1.0 / (16 * len(sentences[w.sequence].words)) for w in windows]
    encoder = [p for name, p in model.named_parameters() if not name.startswith("crf.")]
    if crf:  # without transition scores a CRF's likelihood and its marginals are each word's softmax
        for parameter in model.crf.parameters():
            torch.nn.init.zeros_(parameter)

    def step(distill_weight):
        model.zero_grad(set_to_none=True)
        loss = forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), 4096, distill_weight=distill_weight)
        return loss, [p.grad.clone() for p in encoder]

    plain, plain_grads = step(0.0)
    for window in windows:
        window.soft_labels = torch.nn.functional.one_hot(torch.tensor(window.labels), model.config.num_labels).float()
    taught, taught_grads = step(1.0)
    torch.testing.assert_close(taught, plain)
    for a, b in zip(taught_grads, plain_grads):
        torch.testing.assert_close(a, b)
    for window in windows:
        window.soft_labels = torch.full((len(window.labels), model.config.num_labels), 1 / model.config.num_labels)
    assert step(0.5)[0] != plain  # other targets, another loss
    for window in windows:
        window.soft_labels = None


@pytest.mark.parametrize("seed", range(5))
def test_log_marginals_are_those_of_enumerating_every_tag_sequence(seed):
    torch.manual_seed(seed)
    n_labels, width = 3, 5
    crf = CRF(n_labels, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter)
    emissions = torch.randn(3, width, n_labels)
    lengths = [5, 2, 1]
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    marginals = log_marginals(crf, emissions, mask).exp()
    for row, length in enumerate(lengths):
        expected = torch.zeros(length, n_labels)
        for tags in itertools.product(range(n_labels), repeat=length):
            score = crf.start_transitions[tags[0]] + emissions[row, 0, tags[0]] + crf.end_transitions[tags[-1]]
            for t in range(1, length):
                score = score + crf.transitions[tags[t - 1], tags[t]] + emissions[row, t, tags[t]]
            for t, tag in enumerate(tags):
                expected[t, tag] += score.exp().detach()
        torch.testing.assert_close(marginals[row, :length], expected / expected[0].sum(), rtol=1e-5, atol=1e-6)


def _rows():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 4, requires_grad=True)
    labels = torch.tensor([[-100, 1, 2, -100, 0, -100], [-100, 3, -100, -100, -100, -100], [-100] * 6])
    weights = torch.tensor([0.5, 2.0, 1.0])
    return logits, labels, weights


def test_the_soft_loss_on_one_hot_targets_is_the_token_loss():
    logits, labels, weights = _rows()
    one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), 4).float() * (labels != -100)[..., None]
    torch.testing.assert_close(weighted_soft_loss(logits, one_hot, weights), weighted_token_loss(logits, labels, weights))


def test_under_a_crf_without_transition_scores_the_soft_loss_is_the_softmax_ones():
    logits, labels, weights = _rows()
    crf = CRF(4, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.zeros_(parameter)  # marginals = each word's softmax
    soft = torch.softmax(torch.randn(3, 6, 4), -1) * (labels != -100)[..., None]
    crf_loss = weighted_crf_soft_loss(crf, logits, labels, soft, weights)
    torch.testing.assert_close(crf_loss, weighted_soft_loss(logits, soft, weights))
    crf_loss.backward()
    assert logits.grad[0, 1].abs().sum() > 0 and logits.grad[0, 0].abs().sum() == 0  # only labelled words learn


@pytest.fixture(scope="module")
def sentences(conll_files):
    return read_conll(conll_files["train"]).sentences[:24]


def test_teachers_probabilities_are_averaged_and_other_labels_refused(tiny_model, featured_model, sentences, conll_files):
    labels = build_labels([read_conll(conll_files["train"])])

    def probabilities(*folders):
        return teacher_probabilities([str(f) for f in folders], sentences, labels, torch.device("cpu"), None, 4096)

    softmax, crf, both = probabilities(tiny_model), probabilities(featured_model), probabilities(tiny_model, featured_model)
    for one, other, mean, sentence in zip(softmax, crf, both, sentences):
        assert one.shape == other.shape == (len(sentence.words), len(labels))
        torch.testing.assert_close(one.sum(-1), torch.ones(len(sentence.words)))
        torch.testing.assert_close(other.sum(-1), torch.ones(len(sentence.words)))
        torch.testing.assert_close(mean, (one + other) / 2)
    assert not torch.allclose(torch.cat(softmax), torch.cat(crf))
    with pytest.raises(NertuneError, match="teacher's labels .* are not this run's"):
        teacher_probabilities([str(tiny_model)], sentences, labels[::-1], torch.device("cpu"), None, 4096)


def test_attach_teacher_gives_each_training_window_its_words_probabilities(featured_model, conll_files):
    model, tokenizer, sentences, windows = training_windows(conll_files, slice(0, 24), max_pieces=24)
    assert len(windows) > len(sentences)  # sentences cut into windows: each window gets its own words' rows
    labels = model_labels(featured_model)
    recipe = load_recipe(None, {"teacher": str(featured_model), "distill_weight": 0.3})
    before = torch.random.get_rng_state()  # (loading a CRF teacher draws its CRF's init)
    attach_teacher(windows, recipe, sentences, labels, torch.device("cpu"), None, lambda text: None)
    assert torch.equal(torch.random.get_rng_state(), before)  # the run's random numbers are untouched
    expected = teacher_probabilities([str(featured_model)], sentences, labels, torch.device("cpu"), None, recipe.eval_max_tokens)
    for window in windows:
        assert window.soft_labels.shape == (len(window.labels), len(labels))
        torch.testing.assert_close(window.soft_labels, expected[window.sequence][window.words])
    with pytest.raises(NertuneError, match="average_epochs \\(4\\) is more than the epochs"):
        load_recipe(None, {"average_epochs": 4})


def test_the_average_of_kept_epochs_is_loaded_whole(conll_files, tmp_path):
    labels = build_labels([read_conll(conll_files["train"])])
    model = load_for_training("embedded-minilm", labels, crf=True)
    states = []
    for epoch in (2, 3):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        keep_epoch(model, tmp_path, epoch)
    assert load_average(model, tmp_path, wanted=[1, 2, 3]) == []  # a run stopped early: no mean of fewer epochs
    assert torch.equal(model.state_dict()["classifier.weight"], states[1]["classifier.weight"])  # left as it was
    assert kept_epochs(tmp_path) == [2, 3] and load_average(model, tmp_path, wanted=[2, 3]) == [2, 3]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, (states[0][name] + states[1][name]) / 2, msg=name)
    assert "crf.transitions" in states[0]


def test_a_short_run_learns_from_a_teacher_and_ends_with_the_average(tiny_model, tmp_path):
    common = {"max_train_sentences": 48, "max_eval_sentences": 16, "epochs": 2, "progress": False}
    plain = train(output_dir=str(tmp_path / "plain"), **common)
    taught = train(output_dir=str(tmp_path / "taught"), teacher=str(tiny_model), distill_weight=0.5, average_epochs=2, **common)
    assert taught["averaged_epochs"] == [1, 2] and "averaged_epochs" not in plain
    assert not (tmp_path / "taught" / "epochs").exists()  # the kept epochs go once the run is complete

    # Same seed, same steps: without the teacher's targets the two losses would be equal to the last bit.
    assert taught["epochs"][0]["train_loss"] != plain["epochs"][0]["train_loss"]
    recorded = json.loads((tmp_path / "taught" / "metrics.json").read_text())
    assert recorded["recipe"]["teacher"] == str(tiny_model) and recorded["validation"]["f1"] == taught["validation"]["f1"]


def test_train_on_validation_joins_the_splits_and_scores_test_alone(conll_files, tmp_path):
    metrics = train(
        max_train_sentences=32, max_eval_sentences=16, epochs=2, train_on_validation=True, output_dir=str(tmp_path), progress=False
    )
    assert metrics["train_sentences"] == 48 and "validation" not in metrics and metrics["test"]["f1"] >= 0
    assert metrics["best_epoch"] == 2  # nothing to choose by: the last epoch is the model
    splits = load_splits(max_train_sentences=32, max_eval_sentences=16, train_on_validation=True)
    validation = read_conll(conll_files["validation"]).sentences[:16]
    assert [s.words for s in splits.train.sentences[32:]] == [s.words for s in validation] and splits.validation is None
    seam = splits.train.sentences[31].document
    assert all(s.document > seam for s in splits.train.sentences[32:])  # context never reaches across the seam


def test_document_folds_deal_whole_documents_round_robin_and_hold_out_leaves_one_out(conll_files):
    train_sentences = read_conll(conll_files["train"]).sentences[:200]
    documents = sorted({s.document for s in train_sentences})
    assert len(documents) >= 4
    folds = document_folds(train_sentences, 3)
    for document in documents:  # a document is never split between folds
        assert len({f for s, f in zip(train_sentences, folds) if s.document == document}) == 1
    assert {f for f in folds} == {1, 2, 3}
    for fold in (1, 2, 3):
        splits = load_splits(max_train_sentences=200, max_eval_sentences=16, held_out=(fold, 3))
        kept = [s for s, f in zip(train_sentences, folds) if f != fold]
        assert [s.words for s in splits.train.sentences] == [s.words for s in kept] and 0 < len(kept) < 200
        assert any(f"training without fold {fold} of 3" in n for n in splits.notices())
    with pytest.raises(NertuneError, match="has 1 document"):
        load_splits(max_train_sentences=3, max_eval_sentences=16, held_out=(1, 2))
    for spec in ("3/2", "1/1", "0/2", "1", "a/b"):
        with pytest.raises(NertuneError, match="hold_out"):
            load_recipe(None, {"hold_out": spec})
    with pytest.raises(NertuneError, match="would learn validation sentences it is later asked to teach"):
        load_recipe(None, {"hold_out": "1/2", "train_on_validation": True})


def test_a_cross_fitted_teacher_teaches_only_the_fold_it_held_out(tiny_model, conll_files, tmp_path):
    held = train(max_train_sentences=48, max_eval_sentences=16, epochs=1, hold_out="1/2", output_dir=str(tmp_path / "t1"), progress=False)
    sentences = read_conll(conll_files["train"]).sentences[:48]
    folds = document_folds(sentences, 2)
    assert held["train_sentences"] == folds.count(2) and held["recipe"]["hold_out"] == "1/2" and 0 < folds.count(1) < 48
    labels, cpu, md5 = model_labels(tiny_model), torch.device("cpu"), held["data_md5"]["train"]
    teachers = [str(tmp_path / "t1"), str(tiny_model)]

    mixed = teacher_probabilities(teachers, sentences, labels, cpu, None, 4096, train_md5=md5)
    whole = teacher_probabilities([str(tiny_model)], sentences, labels, cpu, None, 4096)
    teacher = load_trained(teachers[0])
    own = sentence_word_logits(teacher, load_tokenizer(teachers[0]), sentences, cpu, None, 4096)[0].logits
    crf = getattr(teacher, "crf", None)
    for sentence_fold, p, alone, logits in zip(folds, mixed, whole, own):
        if sentence_fold == 2:  # the held-out teacher trained on these: the other teacher alone teaches them
            torch.testing.assert_close(p, alone)
        else:
            torch.testing.assert_close(p, (alone + word_probabilities(logits, crf)) / 2, rtol=1e-4, atol=1e-5)
    with pytest.raises(NertuneError, match=f"{folds.count(2)} training sentences have no teacher that held them out"):
        teacher_probabilities(teachers[:1], sentences, labels, cpu, None, 4096, train_md5=md5)
    with pytest.raises(NertuneError, match="held out fold 1/2 of another training file"):
        teacher_probabilities(teachers, sentences, labels, cpu, None, 4096, train_md5="0" * 32)
    config = json.loads((tmp_path / "t1" / "config.json").read_text())
    assert (config["nertune_hold_out"], config["nertune_hold_out_train_md5"]) == ("1/2", md5)  # what an export keeps
    (tmp_path / "t1" / "metrics.json").rename(tmp_path / "metrics.json")  # as a run still training looks
    with pytest.raises(NertuneError, match="teacher run has not finished"):
        teacher_probabilities(teachers, sentences, labels, cpu, None, 4096, train_md5=md5)
