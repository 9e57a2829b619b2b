"""`nertune export --onnx`: a complete directory written atomically, tags equal to PyTorch's
(fp32) or nearly (int8), used by Tagger.load and `nertune predict` unchanged, clear errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import httpx
import onnx
import onnxruntime as ort
import pytest
import torch

from nertune.data.conll import read_conll
from nertune.errors import NertuneError
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.export.onnx import EXPORT_FILE, MODEL_FILE, export_onnx
from nertune.model import word_scores
from nertune.model.load import sha256
from nertune.model.onnx_runtime import OnnxTokenClassifier, session, session_layout
from nertune.model.word_scores import build_windows, predict_word_logits
from nertune.serve.process import ServerProcess
from nertune.tag.tagger import Tagger
from tests.conftest import run_cli

TEXT = "EU rejects German call to boycott British lamb. Peter Blackburn went to the U.S. on Monday."


@pytest.fixture(scope="module")
def onnx_fp32(tiny_model, tmp_path_factory):
    """Exported by the command, as a user would."""
    out = tmp_path_factory.mktemp("export") / "fp32"
    result = run_cli("export", str(tiny_model), "--onnx", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # data alone on stdout
    assert summary["output_dir"] == str(out) and summary["quantize"] is None
    return out


@pytest.fixture(scope="module")
def onnx_int8(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "int8"
    export_onnx(tiny_model, out, quantize="int8")
    return out


@pytest.fixture(scope="module")
def torch_tagger(tiny_model):
    return Tagger.load(tiny_model, device="cpu", precision="fp32")  # compared with the fp32 export


@pytest.fixture(scope="module")
def sentences(conll_files):
    return read_conll(conll_files["validation"]).sentences[:80]


def test_export_directory_is_complete_and_checked(onnx_fp32, onnx_int8):
    for out, quantize in ((onnx_fp32, None), (onnx_int8, "int8")):
        names = {p.name for p in out.iterdir()}
        assert {MODEL_FILE, EXPORT_FILE, "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
        assert not [n for n in names if n.endswith((".tmp", ".onnx")) and n != MODEL_FILE], "no scratch files left"
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temporary sibling directories"
        info = json.loads((out / EXPORT_FILE).read_text())
        assert info["quantize"] == quantize and info["fused"] is True
        assert info["sha256"][MODEL_FILE] == sha256(out / MODEL_FILE)
    assert json.loads((onnx_fp32 / EXPORT_FILE).read_text())["check"]["max_abs_logit_diff"] < 1e-3
    # int8 weights: about a quarter of the fp32 file.
    assert (onnx_int8 / MODEL_FILE).stat().st_size < 0.35 * (onnx_fp32 / MODEL_FILE).stat().st_size


def test_int8_weights_keep_to_seven_bits(onnx_int8):
    """Full-range int8 weights overflow ONNX Runtime's 16-bit pair sums on CPUs without VNNI (BENCHMARKS.md)."""
    graph = onnx.load(onnx_int8 / MODEL_FILE).graph
    weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert len(weights) >= 6 * 4  # per layer: query/key/value (one packed matrix), attention output, two feed-forward
    largest = max(int(abs(w.astype(int)).max()) for w in weights)
    assert 56 <= largest <= 64  # 7 bits used, not 8 (full range reaches 127)
    assert json.loads((onnx_int8 / EXPORT_FILE).read_text())["weight_bits"] == 7


def test_the_residual_add_and_its_layer_norm_stay_apart_in_the_file_and_in_the_session(onnx_fp32, onnx_int8, tmp_path):
    """ONNX Runtime's SkipLayerNormalization is slower on a CPU than the two nodes it fuses (BENCHMARKS.md): the export
    leaves them apart, and nertune's session (model/onnx_runtime.py, UNFUSED) does not fuse them again when it loads the graph."""
    for out in (onnx_fp32, onnx_int8):
        layers = json.loads((out / "config.json").read_text())["num_hidden_layers"]
        ops = Counter(node.op_type for node in onnx.load(out / MODEL_FILE).graph.node)
        assert ops["LayerNormalization"] == 2 * layers and not ops["SkipLayerNormalization"]  # two a layer
        assert ops["Attention"] + ops["QAttention"] == layers, "the other fusions still happen"
        session(out / MODEL_FILE, optimized_to=tmp_path / "nertune.onnx")  # as the Tagger, evaluate and serve load it
        assert not Counter(node.op_type for node in onnx.load(tmp_path / "nertune.onnx").graph.node)["SkipLayerNormalization"]
        # Able to fail: a plain session (no UNFUSED) fuses them as it loads.
        options = ort.SessionOptions()
        options.optimized_model_filepath, options.log_severity_level = str(tmp_path / "plain.onnx"), 3
        ort.InferenceSession(str(out / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        assert Counter(node.op_type for node in onnx.load(tmp_path / "plain.onnx").graph.node)["SkipLayerNormalization"] == 2 * layers


def test_fp32_tags_equal_pytorch_tags(onnx_fp32, torch_tagger, sentences):
    onnx_tagger = Tagger.load(onnx_fp32)
    assert onnx_tagger.backend == "onnxruntime" and torch_tagger.backend == "pytorch"
    words = [s.words for s in sentences]
    ours, theirs = onnx_tagger.word_logits(words), torch_tagger.word_logits(words)
    assert max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) < 1e-3
    for constrain in (False, True):
        assert onnx_tagger.tag_words_batch(words, constrain) == torch_tagger.tag_words_batch(words, constrain)


def test_int8_tags_mostly_agree_with_pytorch(onnx_int8, torch_tagger, sentences):
    onnx_tagger = Tagger.load(onnx_int8)
    assert onnx_tagger.backend == "onnxruntime-int8"
    words = [s.words for s in sentences]
    pairs = [(a, b) for x, y in zip(onnx_tagger.tag_words_batch(words), torch_tagger.tag_words_batch(words)) for a, b in zip(x, y)]
    assert len(pairs) == sum(map(len, words))
    assert sum(a == b for a, b in pairs) >= 0.95 * len(pairs)


def test_two_sessions_run_passes_at_once_and_give_the_logits_of_one_by_one(onnx_int8, sentences, monkeypatch):
    """Two sessions of one thread each share two cores (model/onnx_runtime.py `session_layout`); model/word_scores.py
    runs a batch's passes on both at once, and what comes back is each pass's own, in order."""
    tagger = Tagger.load(onnx_int8)
    tagger.model = model = OnnxTokenClassifier(onnx_int8, threads=2)
    assert (len(model.sessions), model.concurrent_passes) == (2, 2)
    assert (session_layout(2), session_layout(1), session_layout(4, int8=False)) == ((2, 1), (1, 1), (1, 4))
    tagger.max_tokens = 96  # many passes of a few windows
    words = [s.words for s in sentences]
    shared: list[list] = []  # the passes share_out made for the two sessions
    share_out = word_scores.share_out

    def recording(*args, **kwargs):
        shared[:] = share_out(*args, **kwargs)
        return list(shared)

    monkeypatch.setattr(word_scores, "share_out", recording)
    at_once = tagger.word_logits(words)
    model.concurrent_passes = 1
    monkeypatch.setattr(word_scores, "share_out", lambda *args, **kwargs: list(shared))  # the same passes, one by one
    one_by_one = tagger.word_logits(words)
    assert len(at_once) == len(words) and all(torch.equal(a, b) for a, b in zip(at_once, one_by_one))


def test_a_batch_that_fits_one_pass_is_shared_out_to_both_sessions(onnx_int8, sentences):
    """A served micro-batch is one pass under the token budget: on one one-thread session it would leave the other
    core idle, so it is cut (model/word_scores.py `share_out`); a lone window stays one pass."""
    tagger = Tagger.load(onnx_int8)
    tagger.model = model = OnnxTokenClassifier(onnx_int8, threads=2)
    calls: list[tuple[int, int]] = []  # (session, rows) of each ONNX Runtime call

    class Counted:  # the real session; each call noted
        def __init__(self, number: int, real):
            self.number, self.real = number, real

        def run(self, names, feeds):
            calls.append((self.number, len(feeds["input_ids"])))
            return self.real.run(names, feeds)

    model.run_on([Counted(i, s) for i, s in enumerate(model.sessions)])
    words = [s.words for s in sentences[:8]]
    shared = tagger.word_logits(words)
    assert len(calls) >= 2 and sum(rows for _, rows in calls) == 8  # passes for both sessions, not one of eight
    calls.clear()
    assert len(tagger.word_logits(words[:1])[0]) == len(words[0]) and [rows for _, rows in calls] == [1]
    model.concurrent_passes = 1  # one session's worth: the old single pass, the same words scored
    calls.clear()
    single = tagger.word_logits(words)
    assert [rows for _, rows in calls] == [8]
    assert all(a.shape == b.shape for a, b in zip(shared, single))
    assert all(a.argmax(-1).eq(b.argmax(-1)).float().mean() >= 0.9 for a, b in zip(shared, single))


def test_torch_work_beside_the_sessions_runs_on_one_thread_and_a_pytorch_model_keeps_its_own(onnx_int8, torch_tagger, sentences):
    """torch's OpenMP threads would spin on the cores ONNX Runtime's sessions run on (model/onnx_runtime.py
    `torch_on_one_thread`): an export's tagging and evaluation run torch on one thread, a PyTorch model on all of its."""
    tagger = Tagger.load(onnx_int8)
    seen: list[int] = []  # torch's thread count at each call of the model

    class Noted:  # the real session; torch's threads noted at each call
        def __init__(self, real):
            self.real = real

        def run(self, names, feeds):
            seen.append(torch.get_num_threads())
            return self.real.run(names, feeds)

    tagger.model.run_on([Noted(s) for s in tagger.model.sessions])
    hook = torch_tagger.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite's workers run torch on one thread: two makes the change visible
    try:
        tagger(TEXT)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2  # one thread inside, two again after
        seen.clear()
        evaluate_sentences(tagger.model, tagger.tokenizer, sentences[:1])
        assert seen == [1] and torch.get_num_threads() == 2
        seen.clear()
        torch_tagger(TEXT)
        assert seen == [2]
    finally:
        hook.remove()
        torch.set_num_threads(before)


def test_tagger_on_an_export_gives_exact_offsets(onnx_fp32, torch_tagger):
    tagger = Tagger.load(onnx_fp32)
    found = tagger(TEXT)
    assert found, "the tiny model tags something here"
    assert all(TEXT[e["start"] : e["end"]] == e["text"] for e in found)
    strip = lambda es: [(e["start"], e["end"], e["type"]) for e in es]  # noqa: E731
    assert strip(found) == strip(torch_tagger(TEXT))
    assert tagger.tag_batch(["", TEXT]) == [[], found]
    assert tagger.max_tokens == 1024  # the CPU default


def test_predict_command_on_an_export(onnx_int8, tiny_model):
    ours = run_cli("predict", str(onnx_int8), "--text", TEXT)
    assert ours.returncode == 0, ours.stderr
    row = json.loads(ours.stdout)
    assert row["text"] == TEXT and row["entities"]
    assert all(TEXT[e["start"] : e["end"]] == e["text"] for e in row["entities"])


def test_export_errors_are_one_line(tiny_model, tmp_path):
    missing = run_cli("export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    no_model = run_cli("export", str(empty), "--onnx", str(tmp_path / "out"))
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    occupied = run_cli("export", str(tiny_model), "--onnx", str(keep))
    no_target = run_cli("export", str(tiny_model))
    bad_quant = run_cli("export", str(tiny_model), "--onnx", str(tmp_path / "out"), "--quantize", "int4")
    for result, words in (
        (missing, "not found"),
        (no_model, "cannot load model"),
        (occupied, "refusing to replace"),
        (no_target, "--onnx"),
        (bad_quant, "int4"),
    ):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert (keep / "notes.txt").read_text() == "mine" and not (tmp_path / "out").exists()


def test_failed_export_leaves_the_old_one_whole(onnx_fp32, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(onnx_fp32, old)
    before = {p.name: sha256(p) for p in old.iterdir()}
    result = run_cli("export", str(tmp_path / "nope"), "--onnx", str(old))
    assert result.returncode == 2
    assert {p.name: sha256(p) for p in old.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["old"]


def test_altered_or_misused_export_is_refused(onnx_fp32, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(onnx_fp32, copy)
    with pytest.raises(NertuneError, match="runs on the CPU"):
        Tagger.load(copy, device="cuda")
    with pytest.raises(NertuneError, match="already an ONNX export"):
        export_onnx(copy, tmp_path / "again")
    with open(copy / MODEL_FILE, "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(NertuneError, match="sha256"):
        Tagger.load(copy)


def test_padding_does_not_change_the_exported_models_logits(onnx_fp32, sentences):
    """The fused attention honours the mask: CPU batches padded to the longest (default) or to a
    multiple of 8 (as on GPU) give the same word logits."""
    tagger = Tagger.load(onnx_fp32)
    words = [s.words for s in sentences]
    windows = build_windows(tagger.tokenizer, words, tagger.max_pieces)
    lengths = [len(w) for w in words]
    tight, rounded = (
        predict_word_logits(tagger.model, windows, len(words), lengths, tagger.tokenizer.pad_token_id, pad_multiple=m) for m in (1, 8)
    )
    assert max(float((a - b).abs().max()) for a, b in zip(tight.logits, rounded.logits)) < 1e-4


def test_serve_an_int8_export_over_http(onnx_int8, tmp_path):
    """`nertune serve` on an export: same API, backend reported, entities as the ONNX Tagger returns them."""
    server = ServerProcess(onnx_int8, tmp_path / "server.log", "--no-access-log").wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            info = http.get("/v1/model").json()
            assert info["backend"] == "onnxruntime-int8"
            answer = http.post("/v1/entities", json={"texts": [TEXT, ""]})
            assert answer.status_code == 200
            results = answer.json()["results"]
            expected = Tagger.load(onnx_int8).tag_batch([TEXT])[0]
            assert [(e["type"], e["start"], e["end"]) for e in results[0]["entities"]] == [
                (e["type"], e["start"], e["end"]) for e in expected
            ]
            assert all(TEXT[e["start"] : e["end"]] == e["text"] for e in results[0]["entities"])
            assert results[1]["entities"] == []
            assert http.post("/v1/entities", content=b"{not json").status_code in (400, 422)
    finally:
        assert server.stop(), server.log.read_text()


def test_evaluate_and_compare_take_an_export_folder(onnx_fp32, onnx_int8, tiny_model):
    """`nertune evaluate EXPORT` scores the export as it tags (ONNX Runtime); fp32 scores as PyTorch does."""
    args = ["--data", "conll2003", "--split", "validation", "--max-sentences", "60", "--json"]
    scores = {}
    for name, folder, precision in (("pytorch", tiny_model, "fp32"), ("fp32", onnx_fp32, "fp32"), ("int8", onnx_int8, "auto")):
        result = run_cli("evaluate", str(folder), *args, "--precision", precision)
        assert result.returncode == 0, result.stderr
        scores[name] = json.loads(result.stdout)
    assert [scores[name]["weights"] for name in ("pytorch", "fp32", "int8")] == ["fp32", "fp32", "int8"]
    # An export runs as exported: another precision is refused in one line, before anything is scored.
    refused = run_cli("evaluate", str(onnx_int8), *args, "--precision", "fp32")
    assert refused.returncode == 2 and "runs in the precision it was exported in (int8), not fp32" in refused.stderr
    with pytest.raises(NertuneError, match=r"exported in \(fp32\), not bf16"):
        Tagger.load(onnx_fp32, precision="bf16")
    assert Tagger.load(onnx_int8).precision == "int8" and Tagger.load(onnx_fp32, precision="fp32").precision == "fp32"
    assert scores["fp32"]["f1"] == pytest.approx(scores["pytorch"]["f1"], abs=1e-9)
    assert scores["fp32"]["loss"] == pytest.approx(scores["pytorch"]["loss"], rel=1e-3)
    assert abs(scores["int8"]["f1"] - scores["pytorch"]["f1"]) < 0.05
    compared = run_cli("compare", str(tiny_model), str(onnx_fp32), *args[:6], "--precision", "fp32")
    assert compared.returncode == 0, compared.stderr
