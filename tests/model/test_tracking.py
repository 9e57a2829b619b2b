"""--report-to: the recipe, step metrics, validation and test scores reach a real tracker store, read back
with the tracker's own reader; with none (the default) no tracker files are written."""

from __future__ import annotations

import pytest

import nertune
from nertune.errors import NertuneError

TINY = dict(max_train_sentences=32, max_eval_sentences=16, epochs=2, grad_accum=2, progress=False)


def test_no_tracker_by_default(tmp_path):
    nertune.train(**{**TINY, "epochs": 1}, output_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run" / "tracking").exists() and not (tmp_path / "run" / "tensorboard").exists()


def test_tensorboard_event_file_holds_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: PLC0415  (optional)

    metrics = nertune.train(**TINY, report_to="tensorboard", output_dir=str(tmp_path / "run"))
    events = sorted((tmp_path / "run" / "tracking").rglob("events.out.tfevents.*"))
    assert events, "an event file under the run's tracking/ folder"
    tags = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
        if "test/f1" in accumulator.Tags()["scalars"]:
            assert accumulator.Scalars("test/f1")[-1].value == pytest.approx(metrics["test"]["f1"], abs=1e-6)
            validation = accumulator.Scalars("validation/f1")
            assert [round(v.value, 6) for v in validation] == [round(e["validation"]["f1"], 6) for e in metrics["epochs"]]
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "validation/f1", "test/f1", "validation/per_type_f1/PER"} <= tags


def test_mlflow_file_store_holds_the_recipe_and_scores(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient  # noqa: PLC0415  (optional)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what nertune sets when it picks the store; read here too
    metrics = nertune.train(**TINY, report_to="mlflow", output_dir=str(tmp_path / "run"))
    client = MlflowClient(tracking_uri=(tmp_path / "run" / "tracking").resolve().as_uri())
    experiment = client.get_experiment_by_name("nertune")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["learning_rate"] == str(metrics["recipe"]["learning_rate"])
    assert run.data.params["report_to"] == "mlflow" and run.info.run_name == "run"
    assert run.data.metrics["test/f1"] == pytest.approx(metrics["test"]["f1"], abs=1e-6)
    history = client.get_metric_history(run.info.run_id, "validation/f1")
    assert [round(m.value, 6) for m in sorted(history, key=lambda m: m.step)] == [
        round(e["validation"]["f1"], 6) for e in metrics["epochs"]
    ]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 1


def test_an_unknown_tracker_is_one_line(tmp_path):
    with pytest.raises(NertuneError) as error:
        nertune.train(**TINY, report_to="comet", output_dir=str(tmp_path / "run"))
    assert "recipe field 'report_to'" in str(error.value) and "tensorboard" in str(error.value)
