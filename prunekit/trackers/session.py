"""The chosen trackers of one run, fed from what the run writes into its directory: every epoch record that goes
to metrics.jsonl, the summary and the figures when summary.json is written.

``trackers.json`` in the run directory keeps each tracker's run identity and how many epoch records the trackers
have received: a resumed run starts the same tracker runs again and skips the records they already hold (the
resumed run recomputes those epochs with the same numbers), so no step is logged twice.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prunekit.rundir import FIGURES, METRICS, atomic_write_json
from prunekit.trackers import ALWAYS, TRACKERS, TrackedRun, Tracker

STATE = "trackers.json"
_NOT_VALUES = ("stage", "epoch", "epochs")  # what places an epoch record, not what it measured


def flatten(values: dict, prefix: str = "", sep: str = "/") -> dict:
    """Nested dicts as one level with ``sep``-joined keys (``latency_ms/dense/b1``; a config's ``method.sparsity``)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}{sep}", sep))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def numbers(values: dict) -> dict[str, float]:
    """The finite numbers of ``values`` (flattened), as floats; booleans, strings, lists and None are left out."""
    return {key: float(value) for key, value in flatten(values).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)}


class TrackerSession:
    """The trackers ``logger`` chooses (csv needs nothing: metrics.jsonl is written anyway), started for the run in
    ``run_dir`` (``sweep``: its sweep's folder, or None)."""

    def __init__(self, logger: DictConfig, run_dir: Path, sweep: Path | None, cfg: DictConfig):
        inside = sweep is not None and run_dir.resolve().is_relative_to(sweep.resolve())
        name = str(run_dir.resolve().relative_to(sweep.resolve())) if inside else run_dir.name
        run = TrackedRun(run_dir, name, sweep, OmegaConf.to_container(cfg, resolve=True))
        self.path = run_dir / STATE
        saved = json.loads(self.path.read_text()) if self.path.exists() else {"trackers": {}, "logged": 0}
        self.logged = saved["logged"]
        self.seen = _epoch_records(run_dir / METRICS)  # those of a resumed run's metrics.jsonl, kept as they were
        self.trackers: dict[str, Tracker] = {}
        for tracker in (str(key) for key in logger if key != ALWAYS):
            own = saved["trackers"].get(tracker)
            self.trackers[tracker] = TRACKERS.get(tracker).target(logger[tracker], run, own)
            if own is None:
                self.trackers[tracker].log_config({k: str(v) for k, v in flatten(run.config, sep=".").items()})
        self._save()

    def record(self, record: dict) -> None:
        """One line of metrics.jsonl: an epoch record goes to every tracker (events are the file's own)."""
        if "epoch" not in record or "stage" not in record:
            return
        self.seen += 1
        if self.seen <= self.logged:  # logged before the run was interrupted
            return
        values = numbers({k: v for k, v in record.items() if k not in _NOT_VALUES})
        for tracker in self.trackers.values():
            tracker.log_epoch(record["stage"], record["epoch"], self.seen, values)
        self.logged = self.seen
        self._save()

    def summary(self, summary: dict, run_dir: Path) -> None:
        """The run's summary and its figures (every PNG under figures/)."""
        figures = sorted((run_dir / FIGURES).glob("*.png"))
        for tracker in self.trackers.values():
            tracker.log_summary(numbers(summary))
            tracker.log_figures(figures)

    def close(self, finished: bool) -> None:
        for tracker in self.trackers.values():
            tracker.close(finished)

    def _save(self) -> None:
        if self.trackers:
            atomic_write_json({"trackers": {name: t.state() for name, t in self.trackers.items()},
                               "logged": self.logged}, self.path)


def _epoch_records(path: Path) -> int:
    """How many epoch records metrics.jsonl holds."""
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if {"epoch", "stage"} <= json.loads(line).keys())
