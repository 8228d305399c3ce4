"""The tracker session (what reaches a tracker, once) and the TensorBoard tracker read back with TensorBoard's own
event reader: per-epoch scalars, the summary, figures, one folder per job of a sweep, a resume that logs no step
twice, and a two-rank run that logs once."""
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

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
    return scalars | {"images": events.Tags()["images"]}


RUN = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "logger=tensorboard")


@pytest.mark.slow
def test_tensorboard_holds_every_epoch_the_summary_and_the_figures(cli, tmp_path):
    assert cli("train", *RUN, "hydra.run.dir=run")[0] == 0
    run = tmp_path / "run"
    scalars = _scalars(run / "tensorboard")
    for record in (r for r in read_metrics(run) if "epoch" in r):
        assert (record["epoch"], pytest.approx(record["val_accuracy"])) in scalars[f"{record['stage']}/val_accuracy"]
    assert [step for step, _ in scalars["dense/train_loss"]] == [1, 2]
    assert scalars["summary/accuracy"] == [(0, pytest.approx(read_summary(run)["accuracy"]))]
    assert sorted(scalars["images"]) == sorted(f"figures/{p.stem}" for p in (run / "figures").glob("*.png"))


@pytest.mark.slow
def test_tensorboard_gives_each_job_of_a_sweep_its_folder_and_a_resume_logs_no_step_twice(cli, tmp_path, monkeypatch):
    code, _, err = cli("train", "-m", *RUN, "seed=0,1", "hydra.sweep.dir=sweep")
    assert code == 0, err
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/tensorboard")) == ["0", "1"]
    restore = interrupt_after(monkeypatch, 2)  # stopped in the dense stage's second epoch, after its record
    assert cli("train", *RUN, "hydra.run.dir=broken", "cache_dir=c2")[0] == 130
    restore()
    assert cli("train", *RUN, "hydra.run.dir=broken", "cache_dir=c2", "resume=true")[0] == 0
    assert cli("train", *RUN, "hydra.run.dir=whole", "cache_dir=c3")[0] == 0
    resumed, whole = _scalars(tmp_path / "broken" / "tensorboard"), _scalars(tmp_path / "whole" / "tensorboard")
    assert len(list((tmp_path / "broken" / "tensorboard").iterdir())) == 2  # the same folder, a file per start
    for tag, points in whole.items():
        if tag != "images" and "seconds" not in tag:
            assert resumed[tag] == points, tag  # every step once, with the uninterrupted run's value


@pytest.mark.slow
def test_only_rank_0_logs(cli, tmp_path):
    assert cli("train", *RUN, "distributed.nproc=2", "hydra.run.dir=run")[0] == 0
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1
    assert [step for step, _ in _scalars(tmp_path / "run" / "tensorboard")["dense/train_loss"]] == [1, 2]
