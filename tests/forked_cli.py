"""`python -m nertune ARGS` in a forked child of a warm interpreter: the suite's CLI runs without their imports.

A CLI run in a test spends most of its time importing torch and transformers (README.md gives the suite's time
before and after) for a few seconds of work. `run` forks each run from a multiprocessing forkserver that imported
them once (per pytest worker); the child then sets the run's environment, working folder and standard streams and
executes `nertune/__main__.py` as `-m` does, so argument parsing, every check, the work, the output and the exit
code are the real ones. What a fork cannot give is a fresh interpreter's start-up, so these go to a real subprocess
instead: a run whose environment differs from the server's in a variable read at start-up (`_READ_AT_START`:
`OMP_NUM_THREADS`, `HF_HOME`, `HF_HUB_OFFLINE` are read by torch or huggingface_hub at import), and a call with
`fresh=True` (a test that times start-up). Tests that send signals or need a process handle call `subprocess`
themselves.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from multiprocessing import forkserver
from pathlib import Path

PRELOAD = [
    "torch",
    "transformers",
    "transformers.models.bert.modeling_bert",
    "accelerate",
    "safetensors.torch",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "onnxruntime",
    "nertune.cli.app",
    "nertune.training.loop",
    "nertune.tag.tagger",
    "nertune.evaluate.model_scores",
    "tests.forked_cli",
]
# Prefixes of what the interpreter or a preloaded library reads when it starts (huggingface_hub its HF_ settings
# at import, torch its threads and kernels, tempfile its folder once): a run whose environment differs in one of these
# needs a new interpreter. Anything else (NERTUNE_*, MLFLOW_*, proxies…) is read when used, in the child, after it is set.
_READ_AT_START = ("PYTHON", "LD_", "OMP_", "KMP_", "GOMP_", "MKL_", "ATEN_", "ONEDNN_", "DNNL_", "TORCH", "PYTORCH_", "CUDA",
                  "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "ACCELERATE_", "SAFETENSORS_", "ORT_", "ONNX",
                  "MPL", "XDG_", "HOME", "TMP", "TEMP")  # fmt: skip
# Set in the test's own process by torch (the first) and at import by scikit-learn, joblib or threadpoolctl (the
# others): a new interpreter that needs them sets them again.
_SET_IN_PROCESS = {"TORCHINDUCTOR_CACHE_DIR", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}
_context: multiprocessing.context.ForkServerContext | None = None
_server_env = dict(os.environ)  # as conftest set it, before any test changes it: the server starts with this


def changed(env: dict[str, str]) -> list[str]:
    """The variables in which `env` differs from the server's."""
    return sorted(k for k in env.keys() | _server_env.keys() if env.get(k) != _server_env.get(k))


def _may_fork(env: dict[str, str]) -> bool:
    return not any(k.upper().startswith(_READ_AT_START) and k not in _SET_IN_PROCESS for k in changed(env))


def _child(args: list[str], env: dict[str, str], cwd: str, stdin: str, stdout: str, stderr: str) -> None:
    """The run, inside the forked child: streams, environment and folder as a fresh `python -m nertune` has them."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, os.O_WRONLY), (2, stderr, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding=sys.stdout.encoding, closefd=False)  # multiprocessing set it to os.devnull
    code = 0
    try:
        sys.argv = ["-m", *args]
        runpy.run_module("nertune", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter does: the traceback on stderr, exit status 1
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()  # os._exit skips them; a real interpreter runs them
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run(args: tuple[str, ...], input: str | None, timeout: float, env: dict[str, str], fresh: bool = False) -> subprocess.CompletedProcess:
    """What `subprocess.run([python, -m, nertune, *args], capture_output=True, text=True, ...)` returns."""
    global _context
    command = [sys.executable, "-m", "nertune", *args]
    if fresh or not _may_fork(env):
        return subprocess.run(command, capture_output=True, text=True, input=input, timeout=timeout, env=env)
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
        now = dict(os.environ)
        os.environ.clear()
        os.environ.update(_server_env)  # whatever a test's monkeypatch holds right now
        try:
            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(now)
    with tempfile.TemporaryDirectory(prefix="nertune-cli-") as folder:
        paths = [Path(folder, name) for name in ("stdin", "stdout", "stderr")]
        paths[0].write_text(input or "")
        paths[1].touch()
        paths[2].touch()
        process = _context.Process(target=_child, args=(list(args), env, os.getcwd(), *map(str, paths)))
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(command, timeout)
        # text=True: the locale's encoding, universal newlines
        out, err = (path.read_text() for path in paths[1:])
    return subprocess.CompletedProcess(command, process.exitcode, out, err)
