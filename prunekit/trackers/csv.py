"""``logger=csv``: metrics.jsonl and summary.json in the run directory, which every run writes (the default)."""
from __future__ import annotations

from dataclasses import dataclass

from prunekit.trackers import Tracker, register_tracker


@dataclass
class CsvConfig:
    """No options: the files are the run directory's own."""


@register_tracker("csv", config=CsvConfig)
class Csv(Tracker):
    """metrics.jsonl (one JSON line per epoch and event) and summary.json; always written, nothing more to do."""
