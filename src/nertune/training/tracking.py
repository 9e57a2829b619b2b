"""Experiment tracking through Accelerate's trackers (`--report-to tensorboard|mlflow|wandb`; default none).

What is logged, at the global step it belongs to:
- at the start, the recipe (as the run's configuration / hyperparameters);
- every 10 steps, `train/loss`, `train/learning_rate`, `train/grad_norm`, `train/sentences_per_second`;
- each epoch, `validation/{loss,precision,recall,f1,accuracy}` and `validation/per_type_f1/<TYPE>` per entity type;
- at the end, the same for `test/` (and the best epoch's `validation/`, as `final_validation/`).
TensorBoard and MLflow write under the run's `tracking/` folder (MLflow as a file store, unless
MLFLOW_TRACKING_URI says otherwise); wandb goes where its own settings say. Nothing is switched on
because a library happens to be installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from nertune.errors import NertuneError

TRACKING_DIR = "tracking"
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def tracker_settings(report_to: str, output_dir: Path) -> dict:
    """Accelerator keyword arguments for `report_to` (none: no trackers); a missing library is one line."""
    if report_to == "none":
        return {}
    import importlib.util  # noqa: PLC0415  (only with a tracker)

    from accelerate.utils import ProjectConfiguration  # noqa: PLC0415  (only with a tracker)

    package = _PACKAGES[report_to]
    if importlib.util.find_spec(package) is None and not (package == "mlflow" and importlib.util.find_spec("mlflow_skinny")):
        raise NertuneError(f"--report-to {report_to}: {package} is not installed", fix=f"pip install {package}")
    folder = Path(output_dir) / TRACKING_DIR
    return {"log_with": report_to, "project_config": ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(folder))}


def start(accelerator, recipe, run_name: str) -> None:
    """Open the trackers with the recipe as their configuration (scalars only: None becomes "none")."""
    if not accelerator.log_with:
        return
    if recipe.report_to == "mlflow" and "MLFLOW_TRACKING_URI" not in os.environ:
        import mlflow  # noqa: PLC0415  (optional: the mlflow tracker)

        # a file store in the run's folder, unless the user points MLflow elsewhere (MLflow 3 wants the opt-in
        # for file stores; a database needs a server or SQLAlchemy, which a run's own folder should not)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri((Path(accelerator.logging_dir)).resolve().as_uri())
    config = {k: ("none" if v is None else v) for k, v in recipe.model_dump().items()}
    init = {"mlflow": {"run_name": run_name}, "wandb": {"name": run_name}}
    accelerator.init_trackers("nertune", config=config, init_kwargs={k: v for k, v in init.items() if k == recipe.report_to})


def scores(prefix: str, metrics: dict) -> dict:
    """A split's headline scores and per-type F1 as tracker values."""
    values = {f"{prefix}/{k}": float(metrics[k]) for k in ("loss", "precision", "recall", "f1", "accuracy") if k in metrics}
    values.update({f"{prefix}/per_type_f1/{kind}": float(v["f1"]) for kind, v in (metrics.get("per_type") or {}).items()})
    return values


def log(accelerator, values: dict, step: int) -> None:
    if accelerator.log_with:
        accelerator.log(values, step=step)


def finish(accelerator) -> None:
    if accelerator.log_with:
        accelerator.end_training()
