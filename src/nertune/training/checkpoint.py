"""Resumable checkpoints: everything a run needs to continue bit for bit.

    DIR/checkpoints/step-N/
        model.safetensors      the weights being trained
        optimizer.safetensors  AdamW's moments and step counts, indexed by state.json
        rng.safetensors        torch CPU (and CUDA) generator states, one set per process
        state.json             where the run is (RunState), the recipe, data md5s,
                               optimizer groups, scheduler, loss scaler, Python/NumPy RNG

A checkpoint is written into a temporary directory, flushed to disk and renamed to
step-N when complete, so a kill or a power loss at any moment leaves either a whole
checkpoint or none. state.json records the sha256 of each tensor file; a resume
checks them, so a damaged checkpoint is named (and the one before it offered)
instead of trained on. Only the newest `keep` survive. Nothing is pickled.

The data order needs no list of sentences: each epoch's steps are drawn from
one `random.Random(seed)`, so its state at the start of the epoch plus the
number of steps done there is the whole position.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from nertune.atomic import atomic_dir, write_json, write_text
from nertune.errors import NertuneError
from nertune.model.load import sha256
from nertune.training.recipe import Recipe

CHECKPOINTS = "checkpoints"
STATE = "state.json"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
FORMAT = 1
# Run mechanics that may differ when resuming; every other recipe field must match.
MECHANICS = ("output_dir", "save_every_steps", "keep_checkpoints")


@dataclass
class RunState:
    """Where a run is. The loop updates it; a checkpoint stores it as JSON."""

    epoch: int = 1  # the epoch in progress (1-based)
    steps_done: int = 0  # optimizer steps done in that epoch
    global_step: int = 0
    order_rng: list | None = None  # the data-order Random's state at the start of `epoch`
    history: list[dict] = field(default_factory=list)  # one record per finished epoch
    best_f1: float = -1.0
    best_epoch: int = 0
    train_seconds: float = 0.0  # finished epochs
    # the part of `epoch` done so far (totals over processes)
    epoch_loss: float = 0.0
    epoch_seconds: float = 0.0
    seen: int = 0
    running: float = 0.0  # loss since the last log line
    since_log: int = 0


def rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


# Files only a nertune run writes: a folder holding one of them is a run's, which --overwrite may clear.
RUN_MARKERS = ("metrics.json", "manifest.json", "recipe.yaml", "train_log.csv", CHECKPOINTS)


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> None:
    """A fresh run writes into a new or empty folder: it never silently buries another run, and never
    deletes files nertune did not write. With `overwrite`, an earlier run's folder may be reused
    (clear_output_dir empties it once the new run has started)."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise NertuneError("the output directory is a file", path=str(folder), fix="choose another --output-dir")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not any((folder / marker).exists() for marker in RUN_MARKERS):
        raise NertuneError(
            "the output directory holds files nertune did not write, and nertune will not delete them",
            path=str(folder),
            fix="choose a new or empty --output-dir",
        )
    if overwrite:
        return
    if checkpoint_dirs(folder):
        root = folder / CHECKPOINTS
        raise NertuneError(
            "this directory holds checkpoints of an unfinished run",
            path=str(root),
            fix="add --resume to continue it, or --overwrite to start over",
        )
    what = "a finished run" if (folder / "metrics.json").exists() else "an earlier run's files"
    raise NertuneError(
        f"the output directory holds {what}",
        path=str(folder),
        fix=f"add --overwrite to replace it, train it further with --model {folder} and a new --output-dir, or choose another --output-dir",
    )


def clear_output_dir(output_dir: str | Path) -> None:
    """Empty a folder check_output_dir accepted: nothing of an earlier run stays beside the new one."""
    folder = Path(output_dir)
    for item in folder.iterdir() if folder.is_dir() else ():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()


def new_run_dir(name: str) -> str:
    """`name`, or `name-2`, `name-3`… when two runs start in the same second."""
    candidate, n = name, 1
    while Path(candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def remove_checkpoints(output_dir: str | Path) -> None:
    """A finished run's model directory is its result; the checkpoints were only the way there."""
    shutil.rmtree(Path(output_dir) / CHECKPOINTS, ignore_errors=True)


class Checkpoints:
    """Saves and restores one run's checkpoints (on every process; the main one writes)."""

    def __init__(self, output_dir: Path, keep: int, accelerator, model, optimizer, scheduler, recipe_fields: dict, data_md5: dict):
        self.root = Path(output_dir) / CHECKPOINTS
        self.keep = keep
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.recipe_fields, self.data_md5 = recipe_fields, data_md5
        self.last: Path | None = None

    def save(self, state: RunState) -> Path:
        accelerator = self.accelerator
        rng = gather_object([_rng_state()])  # every process's generators; dropout differs per process
        path = self.root / f"step-{state.global_step}"
        if accelerator.is_main_process:
            for stale in self.root.glob(".step-*"):  # left by a kill during an earlier save
                shutil.rmtree(stale, ignore_errors=True)
            optimizer_tensors, optimizer_json = _flatten_optimizer(self.optimizer.state_dict())
            rng_tensors, rng_json = _flatten_rng(rng)
            with atomic_dir(path) as tmp:
                save_model(accelerator.unwrap_model(self.model), str(tmp / "model.safetensors"))
                save_file(optimizer_tensors, str(tmp / "optimizer.safetensors"))
                save_file(rng_tensors, str(tmp / "rng.safetensors"))
                scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
                write_json(
                    tmp / STATE,
                    {
                        "format": FORMAT,
                        "step": state.global_step,
                        "sha256": {name: sha256(tmp / name) for name in TENSOR_FILES},
                        "run": asdict(state),
                        "recipe": self.recipe_fields,
                        "data_md5": self.data_md5,
                        "world_size": accelerator.num_processes,
                        "optimizer": optimizer_json,
                        "scheduler": self.scheduler.state_dict(),
                        "scaler": scaler,
                        "rng": rng_json,
                    },
                )
            for old in checkpoint_dirs(self.root.parent)[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        self.last = path
        return path

    def restore(self, path: Path, saved: dict) -> RunState:
        """Load a checkpoint found by `find_checkpoint` into the prepared model, optimizer, scheduler, RNGs."""
        accelerator = self.accelerator
        _safely(
            path / "model.safetensors", lambda f: load_model(accelerator.unwrap_model(self.model), str(f), device=str(accelerator.device))
        )
        optimizer_tensors = _safely(path / "optimizer.safetensors", _load_tensors)
        rng_tensors = _safely(path / "rng.safetensors", _load_tensors)
        try:
            optimizer_state = _unflatten_optimizer(optimizer_tensors, saved["optimizer"])
            _check_moments_fit(optimizer_state, self.optimizer, path / "optimizer.safetensors")
            self.optimizer.load_state_dict(optimizer_state)
            self.scheduler.load_state_dict(saved["scheduler"])
            if accelerator.scaler is not None and saved.get("scaler"):
                accelerator.scaler.load_state_dict(saved["scaler"])
            # Last: loading the model above drew nothing from the generators, and training draws next.
            _set_rng_state(rng_tensors, saved["rng"], accelerator.process_index)
            run = RunState(**saved["run"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise NertuneError(
                f"checkpoint {STATE} does not fit its tensor files ({type(error).__name__}: {str(error)[:80]})",
                path=str(path / STATE),
                fix="delete this checkpoint directory to resume from the one before it",
            ) from None
        self.last = path
        return run


def _check_moments_fit(optimizer_state: dict, optimizer, path: Path) -> None:
    """load_state_dict takes moments of any shape and the first step fails far from the cause: check here."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entries in optimizer_state["state"].items():
        moment = entries.get("exp_avg")
        if moment is not None and (int(index) >= len(params) or moment.shape != params[int(index)].shape):
            raise NertuneError(
                "the checkpoint's optimizer moments do not fit this model's parameters (written by another nertune version or model)",
                path=str(path),
                fix="resume with the nertune version that wrote it, or start a fresh run",
            )


def find_checkpoint(output_dir: str | None, recipe_fields: dict, data_md5: dict) -> tuple[Path, dict]:
    """The latest complete checkpoint of the run in `output_dir`, checked against this run's recipe and data."""
    if not output_dir:
        raise NertuneError("--resume needs the run's directory", fix="pass --output-dir DIR of the run to continue")
    directories = checkpoint_dirs(output_dir)
    if not directories:
        finished = (Path(output_dir) / "metrics.json").exists()
        raise NertuneError(
            "no complete checkpoint to resume from" + (" (the run finished: metrics.json is there)" if finished else ""),
            path=str(Path(output_dir) / CHECKPOINTS),
            fix="start the run without --resume",
        )
    path = directories[-1]
    before = f"delete {path} to resume from {directories[-2]}" if len(directories) > 1 else "start the run again without --resume"
    saved = _read_state(path, before)
    for name, digest in saved.get("sha256", {}).items():
        if name not in TENSOR_FILES or not isinstance(digest, str):
            raise NertuneError(f"{STATE} lists {name!r} as a checkpoint file", path=str(path / STATE), fix=before)
        if not (path / name).is_file() or sha256(path / name) != digest:
            raise NertuneError(
                f"checkpoint file {name} is damaged (missing, or its sha256 differs from {STATE}'s)", path=str(path / name), fix=before
            )
    for name, value in recipe_fields.items():
        # A field added to nertune after the checkpoint was written: that run used its default.
        used = saved["recipe"].get(name, Recipe.model_fields[name].default if name in Recipe.model_fields else None)
        if name not in MECHANICS and used != value:
            raise NertuneError(
                f"recipe field {name!r} is {value!r} but the interrupted run used {used!r}",
                path=str(path / STATE),
                fix="resume with the same flags (or recipe) as the interrupted run",
            )
    if saved["data_md5"] != data_md5:
        raise NertuneError(
            "the data files changed since the checkpoint (md5 differs)", path=str(path / STATE), fix="resume with the same data files"
        )
    return path, saved


# What find_checkpoint reads of a state.json, and of which type (restore checks what it reads itself).
_STATE_FIELDS = {"recipe": dict, "data_md5": dict, "sha256": dict}


def _read_state(path: Path, fix: str) -> dict:
    try:
        saved = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise NertuneError(f"checkpoint {STATE} is unreadable (not JSON)", path=str(path / STATE), fix=fix) from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise NertuneError(f"checkpoint {STATE} is of another format", path=str(path / STATE), fix=fix)
    for name, kind in _STATE_FIELDS.items():
        if not isinstance(saved.get(name, {} if name == "sha256" else None), kind):  # sha256: not in older checkpoints
            raise NertuneError(f"checkpoint {STATE} has no valid {name!r}", path=str(path / STATE), fix=fix)
    return saved


def trim_log(path: Path, step: int) -> None:
    """Drop step-log rows written after `step`: the resumed run writes them again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines or not lines[0].startswith("step,"):  # killed before even the header reached the disk
        path.unlink()  # the resumed run's log starts it afresh
        return
    kept = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) <= step]
    write_text(path, "".join(kept))


# ---- the mechanics: torch objects <-> safetensors + JSON ------------------


def _flatten_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """{"state": {i: {name: tensor|number}}, "param_groups": [...]} -> tensors "i.name" + JSON for the rest."""
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict, saved: dict) -> dict:
    state: dict = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, entries in saved["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state() -> dict:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": rng_to_json(random.getstate()),
        "numpy": [name, keys.tolist(), position, has_gauss, gauss],
    }


def _flatten_rng(per_process: list[dict]) -> tuple[dict, list]:
    tensors, rest = {}, []
    for rank, state in enumerate(per_process):
        tensors[f"{rank}.torch"] = state["torch"]
        for device, cuda_state in enumerate(state["cuda"]):
            tensors[f"{rank}.cuda.{device}"] = cuda_state
        rest.append({"python": state["python"], "numpy": state["numpy"], "cuda_devices": len(state["cuda"])})
    return tensors, rest


def _set_rng_state(tensors: dict, rest: list, rank: int) -> None:
    rank = rank if rank < len(rest) else 0  # more processes than the run had: not bit-exact, but seeded
    torch.set_rng_state(tensors[f"{rank}.torch"])
    cuda = [tensors[f"{rank}.cuda.{d}"] for d in range(rest[rank]["cuda_devices"])]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(rng_from_json(rest[rank]["python"]))
    name, keys, position, has_gauss, gauss = rest[rank]["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))


def _load_tensors(path: Path) -> dict:
    return load_file(str(path))


def _safely(path: Path, load):
    """A damaged checkpoint file is the user's to know about, not a traceback."""
    try:
        return load(path)
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise NertuneError(
            f"cannot load checkpoint file ({reason})",
            path=str(path),
            fix="delete this checkpoint directory to resume from the one before it",
        ) from None
