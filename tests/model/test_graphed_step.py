"""The whole optimizer step from one graph per shape (training/speed/graphed_step.py), its bookkeeping on a CPU.

The capture needs a GPU; here `capture` hands back the step itself, so the buffers, the packed loss,
the learning rate read from a tensor and the fallbacks run as they do around a real graph.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import math
from contextlib import nullcontext

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nertune.console import notice
from nertune.data.conll import read_conll
from nertune.data.features import collate_labels
from nertune.data.packing import pack, pack_layout
from nertune.data.splits import build_labels
from nertune.model.crf import add_crf
from nertune.model.loss import (
    packed_crf_targets,
    packed_targets,
    weighted_crf_loss,
    weighted_packed_crf_loss,
    weighted_packed_token_loss,
    weighted_token_loss,
    window_weights,
)
from nertune.model.word_scores import build_windows
from nertune.training import loop
from nertune.training.precision import fresh_accelerator
from nertune.training.recipe import load_recipe
from nertune.training.runner import StepRunner
from nertune.training.speed.graphed_step import GraphedStep, whole_step_fits
from nertune.training.speed.graphs import GraphedForward
from nertune.training.step import forward_backward
from tests.conftest import training_windows


class Capture:
    """Stands where capture_cuda_graph stands: runs the warm-up once, returns the step uncaptured.
    With `watch`, each replay runs the step inside it (the ops a capture would record)."""

    def __init__(self, fail: bool = False, watch=None):
        self.calls, self.fail, self.watch = 0, fail, watch

    def __call__(self, warm_up, step, pool):
        self.calls += 1
        warm_up()
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        if self.watch is None:
            return step

        def watched():
            with self.watch:
                step()

        return watched


class HostReads(TorchDispatchMode):
    """Every op run inside it, and those a CUDA graph cannot hold: an op that reads a tensor's value back to
    the host (`.item()`, a data-dependent shape) fails the capture or bakes one step's value into every replay,
    and a tensor made from host data is a constant the replays never update."""

    READS = {
        "aten._local_scalar_dense",
        "aten.nonzero",
        "aten.masked_select",
        "aten.unique",
        "aten._unique2",
        "aten.unique_consecutive",
        "aten.is_nonzero",
        "aten.equal",
        "aten.lift_fresh",
        "aten.lift_fresh_copy",
    }

    def __init__(self):
        super().__init__()
        self.ops, self.reads = collections.Counter(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops[name] += 1
        masks = name.startswith("aten.index") and any(isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in tree_leaves(args))
        if name in self.READS or masks:  # a boolean-mask index computes its nonzero inside, unseen here
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def setup(conll_files):
    model, tokenizer, sentences, windows = training_windows(conll_files, slice(300, 364))
    return model, tokenizer, windows, [len(s.words) for s in sentences]


def optimizer_and_schedule(model, steps: int):
    """AdamW at lr 1e-4; a CRF in a group of its own at 5e-3, as recipes give it (`crf_learning_rate`). eps 1e-6, not
    1e-8: with 1e-8 a gradient that is only rounding noise (softmax's key bias, some embedding rows) moves its weight by
    up to ±lr either way, and the packed and eager steps round differently, so weights would differ by more than the
    step's arithmetic does (order-dependent: a bf16-forced suite run failed on an embedding row)."""
    crf = getattr(model, "crf", None)
    own = {id(p) for p in crf.parameters()} if crf is not None else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in own], "lr": 1e-4}]
    if crf is not None:
        groups.append({"params": list(crf.parameters()), "lr": 5e-3})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0, eps=1e-6, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (steps - step) / steps))
    return optimizer, schedule


def step_weights(step, words):
    return window_weights(step, words, "sentence", 16, sum(words[w.sequence] for w in step))


def test_the_packed_loss_is_the_unpacked_one(setup):
    model, tokenizer, windows, words = setup
    step = windows[:16]
    weights = step_weights(step, words)
    inputs, unpack = pack(step, tokenizer.pad_token_id, 0, 8, width=GraphedForward.width([len(w.input_ids) for w in step], 8))
    with torch.no_grad():
        logits = model(**inputs).logits
    rows, width = inputs["input_ids"].shape
    labels, token_weights = packed_targets(step, weights, unpack, rows, width)
    assert (labels != -100).sum() == sum(len(w.labels) for w in step) == (token_weights > 0).sum()
    unpacked = weighted_token_loss(logits.flatten(0, 1)[unpack], collate_labels(step, unpack.shape[1]), torch.tensor(weights))
    torch.testing.assert_close(weighted_packed_token_loss(logits, labels, token_weights), unpacked, rtol=1e-5, atol=1e-6)


def with_crf(model):
    model = copy.deepcopy(model)
    add_crf(model)
    return model


def test_the_packed_crf_loss_is_the_unpacked_one(setup, conll_files):
    """The CRF's loss gathered from the packed rows into fixed [windows, words] (rounded up; the extra windows weigh
    0) against model/loss.py's eager one on the same logits, which torchcrf computes: a window with no labelled word
    adds nothing, and one of more than 64 words doubles the words."""
    model, tokenizer, windows, words = setup
    crf = with_crf(model).crf
    train = read_conll(conll_files["train"])
    label2id = {label: i for i, label in enumerate(build_labels([train]))}
    long = next(s for s in train.sentences if len(s.words) > 64)
    (long_window,) = build_windows(tokenizer, [long.words], 510, [[label2id[t] for t in long.tags]], model.config)
    step = [*windows[:11], dataclasses.replace(windows[11], labels=[]), long_window]
    weights = step_weights(windows[:12], words) + [0.01]
    inputs, unpack = pack(step, tokenizer.pad_token_id, 0, 8, width=GraphedForward.width([len(w.input_ids) for w in step], 8))
    with torch.no_grad():
        logits = model(**inputs).logits
    ints, row_weights = packed_crf_targets(step, weights, unpack)
    assert ints.shape == (3, 16, 128) and int(ints[2].sum()) == sum(len(w.labels) for w in step)
    assert row_weights[11] == 0 and row_weights[13:].eq(0).all() and row_weights[12] == pytest.approx(0.01)
    unpacked = weighted_crf_loss(crf, logits.flatten(0, 1)[unpack], collate_labels(step, unpack.shape[1]), torch.tensor(weights))
    torch.testing.assert_close(weighted_packed_crf_loss(crf, logits, ints, row_weights), unpacked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_graphed_steps_train_as_the_eager_steps_do(setup, crf):
    """Six steps, the first eager (it makes AdamW's moments), shapes recurring: same losses, norms and weights;
    with a CRF head the graph's loss is model/crf.py's tree, the eager step's torchcrf's loop."""
    model, tokenizer, windows, words = setup
    model = with_crf(model) if crf else model
    steps = [windows[0:16], windows[16:32], windows[0:16], windows[32:48], windows[16:32], windows[48:64]]
    eager_model, graphed_model = copy.deepcopy(model), copy.deepcopy(model)
    eager_optimizer, eager_schedule = optimizer_and_schedule(eager_model, len(steps))
    optimizer, schedule = optimizer_and_schedule(graphed_model, len(steps))
    capture = Capture()
    graphed = GraphedStep(
        graphed_model, optimizer, 1.0, lambda: torch.autocast("cpu", enabled=False), "cpu", tokenizer.pad_token_id, 0, 8192, capture=capture
    )
    eager_losses, eager_norms, losses, norms = [], [], [], []
    for step in steps:
        weights = step_weights(step, words)
        eager_losses.append(
            forward_backward(eager_model, step, weights, tokenizer.pad_token_id, torch.device("cpu"), 8192, position_offset=0)
        )
        eager_norms.append(torch.nn.utils.clip_grad_norm_(eager_model.parameters(), 1.0))
        eager_optimizer.step()
        eager_schedule.step()
        eager_optimizer.zero_grad(set_to_none=True)

        result = graphed.step(step, weights)
        if result is None:  # the loop's eager step
            loss = forward_backward(graphed_model, step, weights, tokenizer.pad_token_id, torch.device("cpu"), 8192, position_offset=0)
            norm = torch.nn.utils.clip_grad_norm_(graphed_model.parameters(), 1.0)
            optimizer.step()
        else:
            loss, norm = result
        losses.append(loss)
        norms.append(norm)
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        assert all(isinstance(group["lr"], float) and not group["capturable"] for group in optimizer.param_groups)

    report = graphed.report()
    shapes = {tuple(pack_layout(s, 0, 0, 8, GraphedForward.width([len(w.input_ids) for w in s], 8)).input_ids.shape) for s in steps[1:]}
    assert report["eager_steps"] == 1 and report["replays"] == 5 and report["failed"] is None
    assert report["shapes"] == capture.calls == len(shapes) < 5  # each shape captured once, the recurring ones replayed
    torch.testing.assert_close(torch.stack(losses), torch.stack(eager_losses), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.stack(norms), torch.stack(eager_norms), rtol=1e-4, atol=1e-6)
    moved = 0.0
    for (name, eager), graphed_param, start in zip(eager_model.named_parameters(), graphed_model.parameters(), model.parameters()):
        torch.testing.assert_close(graphed_param, eager, rtol=0, atol=2e-6, msg=name)
        moved = max(moved, float((eager - start).detach().abs().max()))
    assert moved > 1e-4  # the steps did train (lr 1e-4, six steps)


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_what_the_graph_captures_never_reads_back_to_the_host(setup, crf):
    """The CUDA-only failure CI can still catch: the captured step (dropout on, as in training) lists its ops,
    and none waits on the device or bakes in host data (torchcrf's loss would: it checks its mask on the host)."""
    model, tokenizer, windows, words = setup
    model = (with_crf(model) if crf else copy.deepcopy(model)).train()
    optimizer, _ = optimizer_and_schedule(model, 2)
    watched = HostReads()
    graphed = GraphedStep(model, optimizer, 1.0, nullcontext, "cpu", tokenizer.pad_token_id, 0, 8192, capture=Capture(watch=watched))
    step = windows[:16]
    assert graphed.step(step, step_weights(step, words)) is None  # the first step is the loop's eager one
    forward_backward(model, step, step_weights(step, words), tokenizer.pad_token_id, torch.device("cpu"), 8192, position_offset=0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    assert graphed.step(step, step_weights(step, words)) is not None
    assert watched.ops["aten._fused_adamw_"] == len(optimizer.param_groups) == 1 + crf  # one call a group; the CRF's own
    assert watched.ops["aten._foreach_norm"] == 1 and watched.ops["aten.bernoulli_"] > 0
    assert watched.reads == []
    assert (watched.ops["aten.logsumexp"] > 0) == crf  # the CRF's partition function is inside the graph
    if crf:  # and the eager CRF loss could not be: torchcrf reads its mask back, model/loss.py sorts labels on the host
        width = max(len(w.input_ids) for w in step)
        with HostReads() as probe:
            weighted_crf_loss(model.crf, torch.randn(16, width, model.config.num_labels), collate_labels(step, width), torch.ones(16))
        assert probe.reads
    with HostReads() as probe:  # and the probe does see a read back
        torch.ones(3)[torch.tensor([True, False, True])].sum().item()
    assert probe.reads == ["aten.lift_fresh", "aten.index", "aten._local_scalar_dense"]


def test_steps_the_graph_cannot_take_fall_back(setup):
    model, tokenizer, windows, words = setup
    model = copy.deepcopy(model)
    optimizer, _ = optimizer_and_schedule(model, 4)
    graphed = GraphedStep(
        model,
        optimizer,
        None,
        lambda: torch.autocast("cpu", enabled=False),
        "cpu",
        tokenizer.pad_token_id,
        0,
        256,
        capture=Capture(),
        max_shapes=1,
    )
    step = windows[:4]
    assert graphed.step(step, step_weights(step, words)) is None  # no AdamW moments yet
    model(**pack(step, tokenizer.pad_token_id, 0)[0]).logits.sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss, norm = graphed.step(step, step_weights(step, words))
    assert norm is None and torch.isfinite(loss)  # no clipping asked for
    assert graphed.step(windows[:40], step_weights(windows[:40], words)) is None  # past 256 tokens: several passes
    assert graphed.step(windows[4:20], step_weights(windows[4:20], words)) is None  # a second shape, past max_shapes=1
    assert graphed.report()["eager_steps"] == 3 and graphed.report()["shapes"] == 1


def with_labels(model, labels: int):
    """A copy of `model` with a fresh head and CRF over `labels` labels (CoNLL's windows use the first nine)."""
    model = copy.deepcopy(model)
    model.classifier = torch.nn.Linear(model.config.hidden_size, labels)
    model.config.num_labels = labels
    add_crf(model)
    return model


@pytest.mark.parametrize("labels", [9, 51])
def test_a_crf_too_wide_for_the_smallest_layout_is_not_graphed_whole(setup, labels):
    """`whole_step_fits`, which the runner reads to keep the graphed forward alone, says no exactly when a step
    of the smallest CRF layout (16 windows of at most 64 words) falls back to the eager path: 51 labels do."""
    model, tokenizer, windows, words = setup
    assert whole_step_fits(model) and whole_step_fits(with_labels(model, 50)) and not whole_step_fits(with_labels(model, 51))
    model = with_labels(model, labels)
    optimizer, _ = optimizer_and_schedule(model, 2)
    step = windows[:16]
    assert max(len(w.labels) for w in step) <= 64
    # AdamW's moments, the CRF's included, as the run's first (eager) step makes them
    (model(**pack(step, tokenizer.pad_token_id, 0)[0]).logits.sum() + sum(p.sum() for p in model.crf.parameters())).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    graphed = GraphedStep(
        model, optimizer, None, lambda: torch.autocast("cpu", enabled=False), "cpu", tokenizer.pad_token_id, 0, 8192, capture=Capture()
    )
    assert (graphed.step(step, step_weights(step, words)) is None) == (not whole_step_fits(model)) == (labels == 51)


def test_a_failed_capture_leaves_the_weights_and_the_run_goes_on_eagerly(setup):
    model, tokenizer, windows, words = setup
    model = copy.deepcopy(model)
    optimizer, _ = optimizer_and_schedule(model, 4)
    model(**pack(windows[:4], tokenizer.pad_token_id, 0)[0]).logits.sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in model.parameters()]
    capture = Capture(fail=True)
    graphed = GraphedStep(
        model, optimizer, 1.0, lambda: torch.autocast("cpu", enabled=False), "cpu", tokenizer.pad_token_id, 0, 8192, capture=capture
    )
    step = windows[:16]
    assert graphed.step(step, step_weights(step, words)) is None
    assert "stream is capturing" in graphed.failed and graphed.report()["shapes"] == 0
    assert "in __call__" in graphed.report()["failed_at"]  # where it broke, for a GPU run's metrics.json
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the warm-up moved nothing
    assert all(p.grad is None for p in model.parameters()) and all(isinstance(g["lr"], float) for g in optimizer.param_groups)
    assert graphed.step(step, step_weights(step, words)) is None and capture.calls == 1  # not tried again


@pytest.mark.parametrize(
    "recipe_name,fields,capture_fails",
    [
        ("seed", {}, False),
        ("seed", {}, True),
        # make train's kind of recipe (casing, document context, a CRF) on packed rows: its loss graphed too
        ("minilm-context-crf", {"pack": True, "group_by_length": False}, False),
    ],
)
def test_the_loop_trains_through_the_graphed_step(tmp_path, capsys, recipe_name, fields, capture_fails):
    """train_run as on one GPU (the CUDA captures left out): steps after the first replay the whole step; a failed
    capture says so and the run finishes with the forward graphs."""
    from nertune.training.setup import setup  # noqa: PLC0415  (the module's `setup` is a fixture)

    fields = {**fields, "max_train_sentences": 64, "max_eval_sentences": 16, "epochs": 1, "output_dir": str(tmp_path / "run")}
    recipe = load_recipe(recipe_name, fields)
    with fresh_accelerator():
        run = setup(recipe, progress=False)
        eager = run.steps  # what setup chose on this CPU; the GPU's runner is built from its parts, the captures left out
        assert eager.graphs is None and eager.kept_embedding_grad is not None
        eager.kept_embedding_grad.close()  # CPU-only (a sparse embedding gradient), not on a GPU
        whole_step = GraphedStep(
            eager.model,
            eager.optimizer,
            recipe.max_grad_norm,
            eager.accelerator.autocast,
            run.device,
            run.tokenizer.pad_token_id,
            eager.position_offset,
            recipe.max_tokens_per_forward,
            capture=Capture(fail=capture_fails),
        )
        graphs = GraphedForward(eager.model, capture=lambda module, args, **_: module)
        run.steps = StepRunner(
            eager.model,
            eager.optimizer,
            eager.scheduler,
            eager.accelerator,
            recipe,
            run.tokenizer.pad_token_id,
            eager.position_offset,
            graphs,
            whole_step,
            None,
            say=notice,
        )
        metrics = loop.train(run)
    graphs = metrics["cuda_graphs"]
    assert math.isfinite(metrics["epochs"][0]["train_loss"]) and (tmp_path / "run" / "model.safetensors").is_file()
    if capture_fails:
        assert graphs["whole_step"]["replays"] == 0 and "stream is capturing" in graphs["whole_step"]["failed"]
        assert graphs["shapes"] >= 1  # the forward and backward graphed instead
        assert "CUDA graph of the whole step failed" in " ".join(capsys.readouterr().err.split())
    else:
        assert graphs["whole_step"] == {**graphs["whole_step"], "replays": 3, "eager_steps": 1, "failed": None}
        assert graphs["shapes"] == 0  # the first, eager step captured no forward graph
