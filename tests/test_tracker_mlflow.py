"""logger=mlflow: what a run, a sweep and a resumed run leave in the local sqlite store, read back with MlflowClient."""
from pathlib import Path

import pytest

from conftest import interrupt_after, read_metrics, read_summary

mlflow_tracking = pytest.importorskip("mlflow.tracking")

QUICK = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "logger=mlflow")


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
def test_a_run_logs_its_params_epochs_summary_and_figures_to_a_store_in_its_folder(cli, tmp_path):
    code, out, err = cli("train", *QUICK, "method.sparsity=0.8", "hydra.run.dir=run")
    assert code == 0, err
    assert "Creating initial MLflow database" not in out + err  # the new store's migration stays off the console
    run_dir = tmp_path / "run"
    client = store(run_dir)
    [experiment] = experiments(client)
    [run] = client.search_runs([experiment.experiment_id])
    assert (experiment.name, run.info.run_name, run.info.status) == ("prunekit", "run", "FINISHED")
    assert run.data.tags["prunekit.run_dir"] == str(run_dir)
    assert run.data.params["method.sparsity"] == "0.8" and run.data.params["data.name"] == "digits"
    dense = [r["val_accuracy"] for r in read_metrics(run_dir) if r.get("stage") == "dense"]
    assert history(client, run.info.run_id, "dense/val_accuracy") == [(1, dense[0]), (2, dense[1])]
    assert run.data.metrics["summary/accuracy"] == read_summary(run_dir)["accuracy"]
    figures = {f"figures/{p.name}" for p in (run_dir / "figures").glob("*.png")}
    assert figures and {a.path for a in client.list_artifacts(run.info.run_id, "figures")} == figures
    # artifacts beside the store, not in MLflow's default ./mlruns under the folder the run was started from
    assert (run_dir / "mlartifacts" / run.info.run_id / "artifacts" / "figures").is_dir()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_sweep_is_one_experiment_with_a_run_per_job(cli, tmp_path):
    code, _, err = cli("train", "-m", "seed=0,1", *QUICK, "figures=false", "hydra.sweep.dir=sweep")
    assert code == 0, err
    client = store(tmp_path / "sweep")
    [experiment] = experiments(client)
    runs = client.search_runs([experiment.experiment_id])
    assert experiment.name == "sweep"
    assert sorted((r.info.run_name, r.data.params["seed"], r.info.status) for r in runs) == [
        ("0", "0", "FINISHED"), ("1", "1", "FINISHED")]
    assert not (tmp_path / "sweep" / "0" / "mlflow.db").exists()


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run_without_logging_a_step_twice(cli, tmp_path, monkeypatch):
    assert cli("train", *QUICK, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    # last.pt: 2 dense epochs and the dense stage's end, then the interruption in the prune stage
    restore = interrupt_after(monkeypatch, 3)
    assert cli("train", *QUICK, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    client = store(tmp_path / "broken")
    [stopped] = client.search_runs([experiments(client)[0].experiment_id])
    assert stopped.info.status == "KILLED"
    assert cli("train", *QUICK, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")[0] == 0
    [resumed] = client.search_runs([experiments(client)[0].experiment_id])
    assert (resumed.info.run_id, resumed.info.status) == (stopped.info.run_id, "FINISHED")
    whole_client = store(tmp_path / "whole")
    [whole] = whole_client.search_runs([experiments(whole_client)[0].experiment_id])
    epochs = [key for key in whole.data.metrics if key.split("/")[0] in ("dense", "prune", "finetune")]
    assert {key for key in resumed.data.metrics if key.split("/")[0] in ("dense", "prune", "finetune")} == set(epochs)
    for key in (key for key in epochs if not key.endswith("/seconds")):  # the same numbers, each step once
        assert history(client, resumed.info.run_id, key) == history(whole_client, whole.info.run_id, key), key
    assert [step for step, _ in history(client, resumed.info.run_id, "dense/seconds")] == [1, 2]


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
