"""logger=wandb: offline runs in the run directory, read back from the .wandb files W&B writes (the records of
wandb's own protobuf schema, in the block format `wandb sync` replays): the history per epoch, the config, the
summary, one group per sweep, and one run id across a resumption with no step logged twice."""
import json
import struct
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import interrupt_after, read_metrics, read_summary
from prunekit.errors import UserError
from prunekit.trackers.wandb import resolve_mode

QUICK = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "logger=wandb")
BLOCK, HEADER = 32768, 7  # the .wandb file: a 7-byte file header, then records in 32 KiB blocks of chunks
FULL, LAST = 1, 4  # chunk kinds that end a record (FIRST and MIDDLE ones continue into the next chunk)


def wandb_records(path: Path):
    """The records of a .wandb file, as wandb.proto's Record messages."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        if BLOCK - position % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + HEADER])
        pending += data[position + HEADER:position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def offline_run(path: Path) -> dict:
    """One offline-run folder's W&B run: id, group, name, config, history rows by step, summary, exit code."""
    run = {"history": {}, "summary": {}, "config": {}, "exit_code": None, "folder": path.name}
    for record in wandb_records(next(path.glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, group=record.run.run_group, name=record.run.display_name,
                       start=record.run.start_time.ToNanoseconds())
            run["config"].update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "history":
            assert record.history.step.num not in run["history"], "a step logged twice"
            run["history"][record.history.step.num] = {_key(i): json.loads(i.value_json) for i in record.history.item}
        elif kind == "summary":
            run["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def offline_runs(root: Path) -> list[dict]:
    """Every offline W&B run under ``root``, in the order they started."""
    return sorted((offline_run(folder) for folder in root.rglob("offline-run-*") if folder.is_dir()),
                  key=lambda run: run["start"])


def epoch_rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl's epoch records as the W&B rows they should be: their numbers as ``<stage>/<key>``, the
    epoch included."""
    return [{f"{r['stage']}/{key}": value for key, value in r.items()
             if key != "epochs" and isinstance(value, int | float) and not isinstance(value, bool)}
            for r in read_metrics(run_dir) if "epoch" in r and "stage" in r]


def measured(row: dict) -> dict:
    """A history row without the keys W&B adds itself (``_step``, ``_runtime``, ``_timestamp``)."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


def untimed(row: dict) -> dict:
    """A row without its epoch's duration, which differs each time the epoch is computed."""
    return {key: value for key, value in row.items() if not key.endswith("/seconds")}


@pytest.fixture(autouse=True)
def offline_default(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)


def test_the_mode_is_the_option_then_wandb_mode_then_offline(monkeypatch):
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "disabled"
    assert resolve_mode("online") == "online"  # the option given on the command line wins over the environment
    monkeypatch.setenv("WANDB_MODE", "cloud")
    with pytest.raises(UserError, match="WANDB_MODE='cloud'"):
        resolve_mode(None)
    with pytest.raises(UserError, match="logger.wandb.mode='shared'"):
        resolve_mode("shared")


@pytest.mark.slow
def test_an_offline_run_holds_the_epochs_config_summary_and_figures(cli, tmp_path):
    code, out, err = cli("train", *QUICK, "hydra.run.dir=run")
    assert code == 0, err
    assert "wandb" not in out and "wandb:" not in err  # W&B's own console lines stay out of prunekit's
    run_dir = tmp_path / "run"
    [run] = offline_runs(run_dir / "wandb")
    assert run["folder"].startswith("offline-run-") and run["exit_code"] == 0
    assert run["id"] == json.loads((run_dir / "trackers.json").read_text())["trackers"]["wandb"]["id"]
    assert run["name"] == "run" and run["group"] == ""
    # one row per epoch record, at the run's step (1, 2, ...), holding exactly metrics.jsonl's numbers
    rows = epoch_rows(run_dir)
    for step, expected in enumerate(rows, start=1):
        assert measured(run["history"][step]) == expected, step
    # then the figures, as W&B images copied into the run
    figures = run["history"][len(rows) + 1]
    assert {key.split("/")[1] for key in figures if key.startswith("figures/")} == \
        {path.stem for path in (run_dir / "figures").glob("*.png")}
    assert all(figures[key] == "image-file" for key in figures if key.endswith("/_type"))
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert run["config"]["method"]["sparsity"] == config.method.sparsity
    assert run["summary"]["accuracy"] == read_summary(run_dir)["accuracy"]


@pytest.mark.slow
def test_a_sweeps_runs_are_one_group(cli, tmp_path):
    code, _, err = cli("train", "-m", "seed=0,1", *QUICK, "hydra.sweep.dir=sweep")
    assert code == 0, err
    runs = offline_runs(tmp_path / "sweep")
    assert [run["group"] for run in runs] == ["sweep", "sweep"]
    assert len({run["id"] for run in runs}) == 2 and {run["name"] for run in runs} == {"0", "1"}
    assert [run["config"]["seed"] for run in runs] == [0, 1] and all(run["exit_code"] == 0 for run in runs)


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_wandb_run_without_logging_a_step_twice(cli, tmp_path, monkeypatch):
    # last.pt is written after each epoch and at the end of each stage: stop after the dense stage's
    restore = interrupt_after(monkeypatch, 3)
    assert cli("train", *QUICK, "hydra.run.dir=run")[0] == 130
    restore()
    assert cli("train", *QUICK, "hydra.run.dir=run", "resume=true")[0] == 0
    # offline, each process writes its own folder: `wandb sync` replays them, in order, into one run
    stopped, resumed = offline_runs(tmp_path / "run" / "wandb")
    assert stopped["id"] == resumed["id"]
    assert (stopped["exit_code"], resumed["exit_code"]) == (1, 0)
    assert stopped["history"] and not set(stopped["history"]) & set(resumed["history"])
    history = stopped["history"] | resumed["history"]
    rows = epoch_rows(tmp_path / "run")
    assert sorted(history) == list(range(1, len(rows) + 2))  # every epoch once, then the figures
    # the epoch the stopped run logged and the resumed one recomputed holds the same numbers but for its timing
    for step, expected in enumerate(rows, start=1):
        assert untimed(measured(history[step])) == untimed(expected), step
