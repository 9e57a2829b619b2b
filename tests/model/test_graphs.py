"""CUDA-graphed training steps (training/speed/graphs.py): the bookkeeping, the bucketed rows and the gradient.

The capture itself needs a GPU (benchmarks/gpu/gpu_step.py measured it on an H200); here the capture step is
the identity (`lambda module, args, **_: module`), so everything around it runs as it does on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from nertune.data.features import collate
from nertune.data.packing import pack, packed_logits, row_width
from nertune.model.loss import window_weights
from nertune.training.api import train
from nertune.training.speed.graphs import BUCKET, GraphedForward, graphs_unavailable
from nertune.training.step import forward_backward
from tests.conftest import training_windows


class Recorder:
    """Stands where torch.cuda.make_graphed_callables stands: returns the module, remembers each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, module, sample_args, allow_unused_input=False):
        self.calls.append((tuple(t.shape for t in sample_args), allow_unused_input))
        return module


@pytest.fixture(scope="module")
def setup(conll_files):
    return training_windows(conll_files, slice(200, 232), casing=True)


def test_graphed_rows_are_bucketed_and_give_the_packed_logits(setup):
    model, tokenizer, _, windows = setup
    step = windows[:16]
    lengths = [len(w.input_ids) for w in step]
    width = GraphedForward.width(lengths, 8)
    assert width % BUCKET == 0 and row_width(lengths, 8) <= width < row_width(lengths, 8) + BUCKET
    recorder = Recorder()
    graphs = GraphedForward(model, capture=recorder)
    inputs, unpack = pack(step, tokenizer.pad_token_id, 0, 8, width=width)
    assert "token_type_ids" in inputs  # casing: the graph takes every input the packed rows have
    with torch.no_grad():
        graphed = graphs.logits(inputs, unpack, "cpu")
        eager = packed_logits(model, *pack(step, tokenizer.pad_token_id, 0, 8), "cpu")
    real = collate(step, tokenizer.pad_token_id, multiple=8)["attention_mask"].bool()
    assert graphed.shape == eager.shape
    torch.testing.assert_close(graphed[real], eager[real], rtol=1e-4, atol=1e-5)
    assert recorder.calls == [(tuple(t.shape for t in inputs.values()), True)]


def test_each_shape_is_captured_once_and_past_the_limit_steps_run_eagerly(setup):
    model, tokenizer, _, windows = setup
    recorder = Recorder()
    graphs = GraphedForward(model, capture=recorder, max_shapes=2)
    with torch.no_grad():
        for count in (4, 4, 8, 4, 12, 12):  # three shapes of rows: 4 and 8 captured, 12 past the limit
            step = windows[:count]
            width = GraphedForward.width([len(w.input_ids) for w in step], 8)
            graphs.logits(*pack(step, tokenizer.pad_token_id, 0, 8, width=width), "cpu")
    report = graphs.report()
    assert len(recorder.calls) == report["shapes"] == 2
    assert report["eager_passes"] == 2 and report["capture_seconds"] >= 0


def test_graphed_step_has_the_eager_step_gradient(setup):
    """Bucketed (wider) rows change the padding, not the gradient of the step."""
    model, tokenizer, sentences, windows = setup
    step = windows[:16]
    words = [len(s.words) for s in sentences]
    weights = window_weights(step, words, "sentence", 16, sum(words[w.sequence] for w in step))

    def gradient(graphs):
        model.zero_grad(set_to_none=True)
        loss = forward_backward(model, step, weights, tokenizer.pad_token_id, torch.device("cpu"), 8192, position_offset=0, graphs=graphs)
        return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    eager_loss, eager_grad = gradient(None)
    graphed_loss, graphed_grad = gradient(GraphedForward(model, capture=Recorder()))
    torch.testing.assert_close(graphed_loss, eager_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed_grad, eager_grad, rtol=1e-3, atol=1e-6)
    assert eager_grad.abs().sum() > 0


def test_graphs_apply_only_to_one_gpu_with_packed_rows():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphs_unavailable(cuda, 1, 0, "bf16") is None and graphs_unavailable(cuda, 1, 2, "no") is None
    assert "CUDA device" in graphs_unavailable(cpu, 1, 0, "no")
    assert "several processes" in graphs_unavailable(cuda, 2, 0, "bf16")
    assert "packed rows" in graphs_unavailable(cuda, 1, None, "bf16")
    assert "fp16" in graphs_unavailable(cuda, 1, 0, "fp16")


def test_asking_for_cuda_graphs_on_a_cpu_says_why_and_trains_eagerly(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = train(max_train_sentences=32, max_eval_sentences=16, epochs=1, cuda_graphs=True, output_dir=str(out), progress=False)
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())  # rich wraps long lines
    assert "cuda_graphs: CUDA graphs need a CUDA device; the steps run eagerly" in text
    assert (out / "model.safetensors").is_file() and metrics["train_sentences"] == 32 and metrics["cuda_graphs"] is None  # none ran
