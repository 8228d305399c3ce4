"""logger=wandb: readers of the offline runs W&B writes in the run directory (the records of wandb's own protobuf
schema, in the block format `wandb sync` replays), used by tests/test_trackers.py's runs, sweeps and resumptions
shared by the three trackers; and the mode a run chooses."""
import json
import struct
from pathlib import Path

import pytest

from conftest import read_metrics
from prunekit.errors import UserError
from prunekit.trackers.wandb import resolve_mode

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
