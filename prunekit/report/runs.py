"""Finding the runs below some folders and reading what a report needs from each.

A run is a directory holding ``.hydra/config.yaml`` (Hydra writes it before the run starts), finished
once ``summary.json`` exists (written last, atomically). Its settings are the composed config flattened to
dotted keys, without the keys that never change a result, and with the options it predates at their defaults,
plus the fingerprint of the data it loaded (summary.json's ``data_fingerprint``) where it has one.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from prunekit.errors import UserError, warn
from prunekit.rundir import SUMMARY

CONFIG = Path(".hydra") / "config.yaml"
# Keys that say how or where a run was done, not what it measured: two runs differing only in these
# are replicates of one setting. "seed" is the replicate index itself.
IGNORED_KEYS = frozenset({"seed", "resume", "debug", "cache_dir", "data.root", "device", "latency"})
IGNORED_PREFIXES = ("hydra.", "paper.")
FINGERPRINT = "data_fingerprint"  # summary.json's hash of the data a run loaded


@dataclass
class Run:
    """One run directory: its settings, its summary (None while unfinished) and its paper block."""

    path: Path
    settings: dict[str, Any]
    summary: dict[str, Any] | None
    paper: dict[str, Any]

    @property
    def finished(self) -> bool:
        """True once summary.json exists: the evaluate stage writes it last."""
        return self.summary is not None


def find_runs(folders: list[Path]) -> list[Run]:
    """Every run at or below ``folders``, in path order (sweep jobs numerically: 2 before 10).

    A run whose config or summary cannot be read is named in one warning line and skipped. Raises
    UserError for a folder that does not exist or holds no run.
    """
    paths: dict[Path, None] = {}  # ordered and free of duplicates, for folders that overlap
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder; give the folders of `prunekit train` runs or sweeps")
        found = _run_dirs(folder)
        if not found:  # a folder given by mistake would otherwise pass unnoticed beside others
            raise UserError(f"no runs below {folder} (a run is a folder holding {CONFIG})")
        paths.update(dict.fromkeys(found))
    runs = [_read_run(path) for path in sorted(paths, key=_natural_key)]
    return [run for run in runs if run is not None]


def _run_dirs(folder: Path) -> list[Path]:
    found = []
    for root, dirs, _ in os.walk(folder):
        here = Path(root)
        if (here / CONFIG).is_file():
            found.append(here.resolve())
            dirs.clear()  # checkpoints/ and figures/ of a run never hold other runs
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    return found


def _natural_key(path: Path) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path))]


def _read_run(path: Path) -> Run | None:
    try:
        # Unresolved: interpolations such as data.root's ${oc.env:...} stay as written.
        config = OmegaConf.to_container(OmegaConf.load(path / CONFIG), resolve=False)
    except Exception as err:  # noqa: BLE001 - OmegaConf raises yaml, omegaconf and OS errors alike
        warn(f"skipped {path / CONFIG}: not a readable config ({_first_line(err)})")
        return None
    if not isinstance(config, dict):
        warn(f"skipped {path / CONFIG}: not a mapping of config keys")
        return None
    summary = None
    if (path / SUMMARY).is_file():
        summary = _read_summary(path / SUMMARY)
        if summary is None:
            return None
    paper = config.get("paper")
    settings = with_fingerprint(flatten(with_defaults(config, schema_defaults())), summary)
    return Run(path, settings, summary, paper if isinstance(paper, dict) else {})


def with_fingerprint(settings: dict[str, Any], summary: dict | None) -> dict[str, Any]:
    """``settings`` with the summary's ``data_fingerprint`` after the ``data.`` keys: runs on different data
    (another folder of same-sized images) are different settings, not replicates. A run from before the
    fingerprint, or an unfinished one, has none, so it is no replicate of a run that has one."""
    fingerprint = (summary or {}).get(FINGERPRINT)
    if fingerprint is None:
        return settings
    keys = list(settings)
    at = max((i + 1 for i, key in enumerate(keys) if key.startswith("data.")), default=0)
    return {**{k: settings[k] for k in keys[:at]}, FINGERPRINT: hashable(fingerprint),
            **{k: settings[k] for k in keys[at:]}}


@functools.cache
def schema_defaults() -> dict:
    """The default of every option the schemas declare for all runs (top level, and the base of each config
    group), without the required ones."""
    from prunekit.config import DataConfig, MethodConfig, ModelConfig, ScheduleConfig, TrainConfig

    def plain(schema) -> dict:
        values = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
        return {k: v for k, v in values.items() if v != "???"}

    groups = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig, "schedule": ScheduleConfig}
    return {**plain(TrainConfig), **{group: plain(schema) for group, schema in groups.items()}}


def with_defaults(config: dict, defaults: dict) -> dict:
    """``config`` with the options it lacks set to their defaults: a run made before an option existed ran
    with the behaviour its default keeps, so it is a replicate of a newer run that states that default."""
    filled = dict(config)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and isinstance(filled[key], dict):
            filled[key] = with_defaults(filled[key], default)
    return filled


def _read_summary(path: Path) -> dict | None:
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        warn(f"skipped the run of {path}: not valid JSON ({_first_line(err)})")
        return None
    if not isinstance(summary, dict):
        warn(f"skipped the run of {path}: a JSON {type(summary).__name__}, not an object of metrics")
        return None
    return summary


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"method": {"name": "gumbel"}}`` -> ``{"method.name": "gumbel"}``, without the ignored keys.

    Lists become tuples, so that every value can be compared and used as part of a group's key.
    """
    flat: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        # f"{key}." catches the ignored sections themselves (hydra:, paper:), not only their keys.
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or f"{key}." in IGNORED_PREFIXES:
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = hashable(value)
    return flat


def hashable(value: Any) -> Any:
    """``value`` with lists as tuples and mappings as sorted tuples of (key text, value) pairs."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), hashable(v)) for k, v in value.items()))
    return value
