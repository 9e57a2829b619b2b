"""The average of the last epochs' weights as a run's final model (recipe `average_epochs`).

    DIR/epochs/epoch-N.safetensors   the weights at the end of each epoch to average (CRF included),
                                     written (atomically) before that epoch's checkpoint, so a resume finds them

`finish` (training/loop.py) loads their mean into the model, scores it and saves it as the run's model in
place of the best epoch's; the folder goes once the run is complete. Averaging the end points of one
trajectory under a decaying rate is the cheap cousin of stochastic weight averaging.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nertune.atomic import atomic_path

EPOCHS = "epochs"


def averaged(recipe, epoch: int) -> bool:
    """Whether `epoch`'s weights are among those the recipe averages."""
    return recipe.average_epochs > 0 and epoch > recipe.epochs - recipe.average_epochs


def averaged_epochs(recipe) -> list[int]:
    return [epoch for epoch in range(1, recipe.epochs + 1) if averaged(recipe, epoch)]


def keep_epoch(model, output_dir: Path, epoch: int) -> None:
    tensors = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(Path(output_dir) / EPOCHS / f"epoch-{epoch}.safetensors") as tmp:
        save_file(tensors, str(tmp))


def kept_epochs(output_dir: Path) -> list[int]:
    return sorted(int(path.stem.split("-")[1]) for path in (Path(output_dir) / EPOCHS).glob("epoch-*.safetensors"))


def load_average(model, output_dir: Path, wanted: list[int] | None = None) -> list[int]:
    """Load the mean of the kept epochs' weights into `model` (float32 sums, each tensor back in its dtype);
    returns the epochs averaged. With `wanted`, only when exactly those were kept (a run stopped early by
    `patience` inside the window has fewer): else [] and the model is left as it is."""
    epochs = kept_epochs(output_dir)
    if not epochs or (wanted is not None and epochs != wanted):
        return []
    total: dict[str, torch.Tensor] = {}
    for epoch in epochs:
        for name, tensor in load_file(str(Path(output_dir) / EPOCHS / f"epoch-{epoch}.safetensors")).items():
            total[name] = total[name] + tensor.float() if name in total else tensor.float()
    current = model.state_dict()
    mean = {
        name: (tensor / len(epochs)).to(current[name].dtype) if current[name].is_floating_point() else current[name]
        for name, tensor in total.items()
    }
    model.load_state_dict(mean)
    return epochs


def remove_epochs(output_dir: Path) -> None:
    shutil.rmtree(Path(output_dir) / EPOCHS, ignore_errors=True)
