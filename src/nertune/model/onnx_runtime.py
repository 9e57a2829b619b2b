"""An `nertune export` directory, loaded as an ONNX Runtime session that answers
like a Hugging Face token-classification model.

The rest of nertune (model/word_scores.py, the Tagger, predict, serve) only
uses `.config`, `.eval()`, `.to(device)`, `.training`, `.crf` (a CRF head,
model/crf.py) and `model(input_ids=, attention_mask=).logits`, so this small wrapper is all
it takes for them to run the exported model unchanged. CPU only (the
onnxruntime wheel nertune depends on is the CPU build).

An int8 export runs as two sessions that share the cores (`session_layout`), each with its own threads: a call
takes whichever is free, so model/word_scores.py runs two passes of a batch at once (`concurrent_passes`), and
cuts passes so that both sessions end together (`share_out`: a served micro-batch would otherwise use one core). Its
small int8 passes keep one thread busier than they keep two, and a lone text on half the threads is no slower
(BENCHMARKS.md, tagging speed).
"""

from __future__ import annotations

import json
import queue
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from nertune.data.casing import casing_scheme
from nertune.errors import NertuneError
from nertune.model.crf import CRF_FILE, load_crf
from nertune.model.load import file_in, sha256

MODEL_FILE = "model.onnx"
EXPORT_FILE = "nertune_export.json"
UNFUSED = ("SkipLayerNormFusion",)  # ONNX Runtime graph transformers a session leaves out (session())


@contextmanager
def torch_on_one_thread(model) -> Iterator[None]:
    """For an ONNX Runtime model, the calling thread's torch work (collating, placing scores, softmax) on that
    thread alone while the block runs. torch's OpenMP threads, once woken, wait spinning on the cores the sessions
    need, and a small batch takes longer beside them (BENCHMARKS.md, serving). A PyTorch model keeps its threads:
    they are its own."""
    if getattr(model, "backend", "pytorch") == "pytorch":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def is_export(directory: str | Path) -> bool:
    """Whether `directory` is an `nertune export` folder (not a Hugging Face model folder)."""
    return (Path(directory) / EXPORT_FILE).is_file()


def session(path: str | Path, threads: int = 0, config: dict[str, str] | None = None, optimized_to: str | Path | None = None):
    """An ONNX Runtime CPU session with every graph optimization; threads=0: one per physical core. `config`:
    session config entries over nertune's (benchmarks/serve/tagger_costs.py times the spinning ones).
    `optimized_to`: a file where ONNX Runtime saves the graph as it runs it, after its own fusions."""
    try:
        import onnxruntime as ort  # noqa: PLC0415  (optional: onnx extra)
    except ImportError:
        raise NertuneError("onnxruntime is not installed", fix="pip install 'nertune[onnx]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one sequential chain of ops: no second pool competing for the cores
    options.log_severity_level = 3  # errors only
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    # Threads that spin after a run hold the cores the caller's next (torch, numpy) work needs: a single text
    # waited ~10 ms for them (BENCHMARKS.md, tagging latency).
    for key, value in {"session.intra_op.allow_spinning": "0", **(config or {})}.items():
        options.add_session_config_entry(key, value)
    # ONNX Runtime's SkipLayerNormalization takes 3-5x the time of the Add and LayerNormalization it would fuse on
    # the CPUs measured (BENCHMARKS.md, int8 tagging): exports keep them apart, and so does the session.
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED)


def session_layout(threads: int = 0, int8: bool = True) -> tuple[int, int]:
    """(sessions, threads each) for `threads` in all; 0: as many as torch uses (one per physical core, or the
    caller's torch.set_num_threads). An int8 export splits them between two sessions; an fp32 one keeps one session
    on all of them, whose matrix multiplies use the threads well (a lone text took 9.0 ms on one of two cores, 7.2 on
    both; BENCHMARKS.md, tagging speed)."""
    threads = threads or torch.get_num_threads()
    sessions = 2 if int8 and threads >= 2 else 1
    return sessions, threads // sessions


class OnnxTokenClassifier:
    """`model(input_ids=, attention_mask=).logits` from ONNX Runtime sessions (thread-safe)."""

    training = False  # inference only

    def __init__(self, directory: str | Path, threads: int = 0):
        from transformers import AutoConfig  # noqa: PLC0415  (no transformers at import)

        directory = Path(directory)
        self.info = read_export_info(directory)
        path = file_in(directory, self.info.get("model", MODEL_FILE), EXPORT_FILE)
        self._check_digest(path)
        try:
            self.config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
        except (OSError, ValueError) as error:
            raise NertuneError(
                f"cannot read config.json ({str(error).splitlines()[0]})", path=str(directory), fix="export the model again"
            ) from None
        if (directory / CRF_FILE).exists():
            self._check_digest(file_in(directory, CRF_FILE, EXPORT_FILE))
        load_crf(self, directory)  # a CRF head's scores, for decoding (config.json says whether there is one)
        count, each = session_layout(threads, self.info.get("quantize") == "int8")
        self.run_on([session(path, each) for _ in range(count)])
        self.inputs = {i.name for i in self.session.get_inputs()}
        if casing_scheme(self.config) and "token_type_ids" not in self.inputs:  # would silently tag without casing
            raise NertuneError(
                f"config.json names casing classes but {path.name} takes no token_type_ids",
                path=str(directory),
                fix="export the model again with `nertune export`",
            )
        self.backend = "onnxruntime-int8" if self.info.get("quantize") == "int8" else "onnxruntime"

    def run_on(self, sessions: list) -> None:
        """Run on these sessions, each taken by one pass at a time (benchmarks compare layouts and settings)."""
        self.sessions, self.concurrent_passes = list(sessions), len(sessions)
        self._free: queue.LifoQueue = queue.LifoQueue()  # last in, first out: a lone caller keeps one warm session
        for free in self.sessions:
            self._free.put(free)

    @property
    def session(self):
        """The first session: its inputs and model path are every session's."""
        return self.sessions[0]

    def _check_digest(self, path: Path) -> None:
        """A file the export recorded must be the one it wrote (model.onnx, crf.safetensors)."""
        digests = self.info.get("sha256")
        expected = digests.get(path.name) if isinstance(digests, dict) else None
        if not isinstance(expected, str):
            raise NertuneError(
                f"{EXPORT_FILE} records no sha256 for {path.name}, so the file cannot be checked",
                path=str(path.parent / EXPORT_FILE),
                fix="export the model again with `nertune export`",
            )
        if sha256(path) != expected:
            raise NertuneError(
                f"{path.name} does not match its sha256 in {EXPORT_FILE} (truncated or altered)",
                path=str(path),
                fix="export the model again with `nertune export`",
            )

    def eval(self) -> "OnnxTokenClassifier":
        return self

    def train(self, mode: bool = True) -> "OnnxTokenClassifier":
        if mode:
            raise NertuneError("an ONNX export can only run inference", fix="train from the PyTorch model directory")
        return self

    def to(self, device) -> "OnnxTokenClassifier":
        if torch.device(device).type != "cpu":
            raise NertuneError(
                f"an ONNX export runs on the CPU, not {device}",
                fix="use device='cpu' (--device cpu), or the PyTorch model directory on a GPU",
            )
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None, **_):
        from transformers.modeling_outputs import TokenClassifierOutput  # noqa: PLC0415  (no transformers at import)

        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:  # a model with casing classes (data/casing.py) takes them as token types
            feeds["token_type_ids"] = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        arrays = {name: t.cpu().numpy().astype("int64", copy=False) for name, t in feeds.items()}
        running = self._free.get()
        try:
            (logits,) = running.run(["logits"], arrays)
        finally:
            self._free.put(running)
        return TokenClassifierOutput(logits=torch.from_numpy(logits))


def read_export_info(directory: Path) -> dict:
    path = directory / EXPORT_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as error:
        raise NertuneError(
            f"{EXPORT_FILE} is unreadable ({str(error).splitlines()[0]})",
            path=str(path),
            fix="export the model again with `nertune export`",
        ) from None
    return info
