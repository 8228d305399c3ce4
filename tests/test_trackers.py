"""The tracker session (what reaches a tracker, once), and one run, one sweep and one resumption with the three
trackers at once, each read back with its own reader (TensorBoard's event reader, MlflowClient, W&B's record
protobuf; the last two in tests/test_tracker_mlflow.py and tests/test_tracker_wandb.py): per-epoch figures, the
config, the summary, the figures, a sweep grouped, a resumed run that continues each tracker's run with no step
twice. A run on two ranks logs once (tests/test_distributed_runs.py)."""
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import test_tracker_mlflow as mlflow
import test_tracker_wandb as wandb
from conftest import interrupt_after, read_metrics, read_summary
from prunekit.errors import UserError
from prunekit.registry import Entry
from prunekit.trackers import TRACKERS, Tracker, check_installed
from prunekit.trackers.session import TrackerSession, numbers


def test_only_finite_numbers_reach_a_tracker_flattened():
    values = {"accuracy": 0.9, "hit": True, "method": "gumbel", "loss": float("nan"), "sizes": [1, 2],
              "latency_ms": {"dense": {"b1": 1.5}}, "none": None}
    assert numbers(values) == {"accuracy": 0.9, "latency_ms/dense/b1": 1.5}


class Recorder(Tracker):
    calls: list = []

    def __init__(self, cfg, run, saved):
        super().__init__(cfg, run, saved)
        Recorder.calls.append(("start", saved))

    def state(self):
        return {"id": "r1"}

    def log_config(self, config):
        Recorder.calls.append(("config", config["seed"]))

    def log_epoch(self, stage, epoch, step, values):
        Recorder.calls.append(("epoch", stage, epoch, step, values["loss"]))


def test_a_resumed_session_continues_the_tracker_run_and_sends_no_record_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(TRACKERS, "get", lambda name: Entry("recorder", Recorder, None, ""))
    Recorder.calls = []
    logger, cfg = OmegaConf.create({"recorder": {}}), OmegaConf.create({"seed": 3})
    first = TrackerSession(logger, tmp_path, None, cfg)
    for epoch in (1, 2):
        first.record({"stage": "dense", "epoch": epoch, "loss": 1.0 / epoch})
    first.record({"event": "dense_cache", "hit": False})  # an event: metrics.jsonl's own
    # interrupted after epoch 2, whose checkpoint was not written: metrics.jsonl keeps epoch 1 only
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"stage": "dense", "epoch": 1, "loss": 1.0}) + "\n")
    second = TrackerSession(logger, tmp_path, None, cfg)
    for epoch in (2, 3):
        second.record({"stage": "dense", "epoch": epoch, "loss": 1.0 / epoch})
    assert Recorder.calls == [("start", None), ("config", "3"), ("epoch", "dense", 1, 1, 1.0),
                              ("epoch", "dense", 2, 2, 0.5), ("start", {"id": "r1"}),
                              ("epoch", "dense", 3, 3, 1 / 3)]


def test_a_tracker_that_is_not_installed_is_refused_with_its_pip_extra(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda module: None)
    with pytest.raises(UserError, match=r"logger=tensorboard needs the tensorboard package.*prunekit\[tensorboard\]"):
        check_installed(OmegaConf.create({"tensorboard": {}}))
    check_installed(OmegaConf.create({"csv": {}}))  # metrics.jsonl needs nothing


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return scalars | {"images": events.Tags()["images"], "hparams": events.PluginTagToContent("hparams")}


LOGGERS = "logger=[tensorboard,mlflow,wandb]"
RUN = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", LOGGERS)


@pytest.fixture(autouse=True)
def offline_defaults(monkeypatch):
    """The stores the runs choose themselves: nothing from the environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)


@pytest.mark.slow
def test_a_run_gives_each_tracker_its_epochs_config_summary_and_figures(cli, tmp_path):
    code, out, err = cli("train", *RUN, "method.sparsity=0.8", "hydra.run.dir=run")
    assert code == 0, err
    run = tmp_path / "run"
    records, summary = [r for r in read_metrics(run) if "epoch" in r], read_summary(run)
    figures = sorted(p.stem for p in (run / "figures").glob("*.png"))
    # TensorBoard: <stage>/<figure> at the stage's epochs, the summary, the figures, the config as hyperparameters
    scalars = _scalars(run / "tensorboard")
    for record in records:
        assert (record["epoch"], pytest.approx(record["val_accuracy"])) in scalars[f"{record['stage']}/val_accuracy"]
    assert [step for step, _ in scalars["dense/train_loss"]] == [1, 2]
    assert scalars["summary/accuracy"] == [(0, pytest.approx(summary["accuracy"]))]
    assert sorted(scalars["images"]) == [f"figures/{name}" for name in figures]
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(scalars["hparams"]["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["method.sparsity"].string_value == "0.8"
    # MLflow: one run in a store in the run's folder, params, metrics per step, the figures as artifacts
    assert "Creating initial MLflow database" not in out + err  # the new store's migration stays off the console
    client = mlflow.store(run)
    [experiment] = mlflow.experiments(client)
    [logged] = client.search_runs([experiment.experiment_id])
    assert (experiment.name, logged.info.run_name, logged.info.status) == ("prunekit", "run", "FINISHED")
    assert logged.data.tags["prunekit.run_dir"] == str(run)
    assert logged.data.params["method.sparsity"] == "0.8" and logged.data.params["data.name"] == "digits"
    dense = [(r["epoch"], r["val_accuracy"]) for r in records if r["stage"] == "dense"]
    assert mlflow.history(client, logged.info.run_id, "dense/val_accuracy") == dense
    assert logged.data.metrics["summary/accuracy"] == summary["accuracy"]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "figures")}
    assert artifacts == {f"figures/{name}.png" for name in figures}
    # artifacts beside the store, not in MLflow's default ./mlruns under the folder the run was started from
    assert (run / "mlartifacts" / logged.info.run_id / "artifacts" / "figures").is_dir()
    assert not (tmp_path / "mlruns").exists()
    # W&B: one offline run, its history row per epoch (then the figures), config and summary
    assert "wandb" not in out and "wandb:" not in err  # W&B's own console lines stay out of prunekit's
    [offline] = wandb.offline_runs(run / "wandb")
    assert offline["folder"].startswith("offline-run-") and offline["exit_code"] == 0
    assert offline["id"] == json.loads((run / "trackers.json").read_text())["trackers"]["wandb"]["id"]
    assert (offline["name"], offline["group"]) == ("run", "")
    rows = wandb.epoch_rows(run)
    for step, expected in enumerate(rows, start=1):
        assert wandb.measured(offline["history"][step]) == expected, step
    images = offline["history"][len(rows) + 1]
    assert sorted({key.split("/")[1] for key in images if key.startswith("figures/")}) == figures
    assert offline["config"]["method"]["sparsity"] == 0.8 and offline["summary"]["accuracy"] == summary["accuracy"]


@pytest.mark.slow
def test_a_sweep_is_a_folder_per_job_one_experiment_and_one_group(cli, tmp_path):
    code, _, err = cli("train", "-m", *RUN, "seed=0,1", "figures=false", "hydra.sweep.dir=sweep")
    assert code == 0, err
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/tensorboard")) == ["0", "1"]
    client = mlflow.store(tmp_path / "sweep")
    [experiment] = mlflow.experiments(client)
    assert experiment.name == "sweep"
    assert sorted((r.info.run_name, r.data.params["seed"], r.info.status)
                  for r in client.search_runs([experiment.experiment_id])) == [("0", "0", "FINISHED"),
                                                                               ("1", "1", "FINISHED")]
    assert not (tmp_path / "sweep" / "0" / "mlflow.db").exists()
    runs = wandb.offline_runs(tmp_path / "sweep")
    assert [run["group"] for run in runs] == ["sweep", "sweep"] and {run["name"] for run in runs} == {"0", "1"}
    assert len({run["id"] for run in runs}) == 2 and [run["config"]["seed"] for run in runs] == [0, 1]


@pytest.mark.slow
def test_a_resumed_run_continues_each_tracker_run_and_logs_no_step_twice(cli, tmp_path, monkeypatch):
    assert cli("train", *RUN, "hydra.run.dir=whole", "cache_dir=c1")[0] == 0
    restore = interrupt_after(monkeypatch, 3)  # after the dense stage's end: stopped in the prune stage
    assert cli("train", *RUN, "hydra.run.dir=broken", "cache_dir=c2")[0] == 130
    restore()
    client = mlflow.store(tmp_path / "broken")
    [stopped] = client.search_runs([mlflow.experiments(client)[0].experiment_id])
    assert stopped.info.status == "KILLED"
    assert cli("train", *RUN, "hydra.run.dir=broken", "cache_dir=c2", "resume=true")[0] == 0
    # TensorBoard: the same folder, an event file per start, every step once with the uninterrupted run's value
    resumed, whole = _scalars(tmp_path / "broken" / "tensorboard"), _scalars(tmp_path / "whole" / "tensorboard")
    assert len(list((tmp_path / "broken" / "tensorboard").iterdir())) == 2
    for tag, points in whole.items():
        if tag not in ("images", "hparams") and "seconds" not in tag:
            assert resumed[tag] == points, tag
    # MLflow: the same run, finished, each step once
    [again] = client.search_runs([mlflow.experiments(client)[0].experiment_id])
    assert (again.info.run_id, again.info.status) == (stopped.info.run_id, "FINISHED")
    whole_client = mlflow.store(tmp_path / "whole")
    [uninterrupted] = whole_client.search_runs([mlflow.experiments(whole_client)[0].experiment_id])
    epochs = [key for key in uninterrupted.data.metrics if key.split("/")[0] in ("dense", "prune", "finetune")]
    for key in (key for key in epochs if not key.endswith("/seconds")):
        assert mlflow.history(client, again.info.run_id, key) == \
            mlflow.history(whole_client, uninterrupted.info.run_id, key), key
    # W&B: two offline folders of one id (wandb sync replays them into one run), no step in both
    first, second = wandb.offline_runs(tmp_path / "broken" / "wandb")
    assert first["id"] == second["id"] and (first["exit_code"], second["exit_code"]) == (1, 0)
    assert first["history"] and not set(first["history"]) & set(second["history"])
    history, rows = first["history"] | second["history"], wandb.epoch_rows(tmp_path / "broken")
    assert sorted(history) == list(range(1, len(rows) + 2))  # every epoch once, then the figures
    for step, expected in enumerate(rows, start=1):
        assert wandb.untimed(wandb.measured(history[step])) == wandb.untimed(expected), step
