"""logger=mlflow: MlflowClient readers of the local sqlite store (the runs, sweeps and resumptions that fill it are
tests/test_trackers.py's, shared by the three trackers), and the config values MLflow cannot hold."""
from pathlib import Path

import pytest


mlflow_tracking = pytest.importorskip("mlflow.tracking")



@pytest.fixture(autouse=True)
def default_store(monkeypatch):
    """The store a run chooses itself: no MLFLOW_TRACKING_URI from the environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def store(folder: Path):
    return mlflow_tracking.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def experiments(client) -> list:
    """The experiments prunekit made (MLflow creates "Default" with every store)."""
    return [e for e in client.search_experiments() if e.name != "Default"]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_config_values_mlflow_cannot_hold_are_truncated_or_skipped_and_said_so(tmp_path):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    from omegaconf import OmegaConf

    from prunekit.trackers import TrackedRun
    from prunekit.trackers.mlflow import MLflow, MLflowConfig

    run = TrackedRun(tmp_path / "run", "run", None, {})
    run.dir.mkdir()
    tracker = MLflow(OmegaConf.structured(MLflowConfig), run, None)
    config = {f"paper.claim_{i}": str(i) for i in range(250)}  # more than one batch of 100
    config |= {"paper.abstract": "x" * (MAX_PARAM_VAL_LENGTH + 1), "paper.top-1 (%)": "76"}
    tracker.log_config(config)
    tracker.close(finished=True)
    logged = store(run.dir).get_run(tracker.run_id).data
    assert len(logged.params) == 251 and logged.params["paper.claim_249"] == "249"
    assert logged.params["paper.abstract"] == "x" * MAX_PARAM_VAL_LENGTH
    assert logged.tags["prunekit.params_truncated"] == "paper.abstract"
    assert logged.tags["prunekit.params_skipped"] == "paper.top-1 (%)"
