"""Settings and their replicates: which config keys vary across runs, and the groups of runs they define.

Runs whose settings agree on every key that varies are seeds of one setting (one group). A key varies
when two runs holding it disagree on its value. A key that only some runs hold (``method.tau`` of
``method=gumbel``) varies too unless the keys that vary already tell those runs apart, so a sweep over
methods is grouped by ``method.name`` rather than by every option one of the methods has. A run that
repeats the settings and seed of another (a copy of its directory) is counted once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prunekit.errors import UserError, warn
from prunekit.report.runs import Run, hashable

DATASET = "data.name"
MODEL = "model.name"
METHOD = "method.name"
SPARSITY = "method.sparsity"
# The names a user types for the keys most reports are about.
ALIASES = {"method": METHOD, "dataset": DATASET, "model": MODEL, "sparsity": SPARSITY,
           "target_flops": "method.target_flops", "target_params": "method.target_params"}
HEADLINE_KEYS = (DATASET, MODEL, METHOD, SPARSITY)  # what a table is labelled by when no key varies
ABSENT = object()  # the value of a key a run does not hold (not the same as a null value)
TIMED = "latency"  # the summary.json numbers that are timings start with this
UNSTABLE = "latency_unstable"  # summary.json: true when a run's timings spread too widely to be trusted


@dataclass
class Group:
    """The finished runs of one setting (its values of the keys that vary); the seeds are replicates."""

    settings: dict[str, Any]
    runs: list[Run]

    def value(self, key: str) -> Any:
        """The group's value of any config key (one that varies or not; ABSENT if its runs lack it)."""
        # The runs of a group agree on every key: on those that vary by construction, on the others
        # because they do not vary (and whether they hold one is settled by the keys that vary).
        return self.runs[0].settings.get(key, ABSENT)

    def values(self, metric: str) -> list[float]:
        """The finite numbers ``metric`` has in the runs' summaries (runs without it are left out, and so are
        the latency figures of runs whose timing was unstable)."""
        return [float(v) for run in self.runs if trusted(run, metric) and is_number(v := run.summary.get(metric))]

    def unstable(self, metric: str) -> int:
        """How many runs have a number for ``metric`` that :meth:`values` leaves out as unstably timed."""
        return sum(not trusted(run, metric) and is_number(run.summary.get(metric)) for run in self.runs)


def trusted(run: Run, metric: str) -> bool:
    """False for a latency figure of a run that flagged its timing unstable (its spread was large)."""
    return not (metric.startswith(TIMED) and run.summary.get(UNSTABLE) is True)


def is_number(value: Any) -> bool:
    """True for a finite int or float (not a bool): a value that can be averaged."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def varying_keys(runs: list[Run]) -> list[str]:
    """The keys that tell the settings of ``runs`` apart, in config order (data, model, method, ...)."""
    order: dict[str, None] = {}
    for run in runs:
        order.update(dict.fromkeys(run.settings))
    differing = [key for key in order if len({r.settings[key] for r in runs if key in r.settings}) > 1]
    # Keys held by some runs only, each kept unless the differing keys already determine who holds it.
    partial = [key for key in order if key not in differing and not all(key in r.settings for r in runs)]
    unexplained = [key for key in partial if not _held_by_setting(key, runs, differing)]
    return [key for key in order if key in differing or key in unexplained]


def _held_by_setting(key: str, runs: list[Run], keys: list[str]) -> bool:
    holds: dict[tuple, bool] = {}
    for run in runs:
        setting = tuple(run.settings.get(k, ABSENT) for k in keys)
        if holds.setdefault(setting, key in run.settings) != (key in run.settings):
            return False
    return True


def distinct_runs(runs: list[Run]) -> list[Run]:
    """``runs`` with each finished run of the same settings and seed as an earlier one left out, with a
    warning naming them: a copied run directory, or the same run done again, is not another replicate."""
    alike: dict[tuple, list[Run]] = {}
    for run in (run for run in runs if run.finished):
        key = (tuple(sorted(run.settings.items())), hashable(run.summary.get("seed")))
        alike.setdefault(key, []).append(run)
    repeated = [same for same in alike.values() if len(same) > 1]
    for same in repeated:
        warn(f"seed {show_value(same[0].summary.get('seed'))} of one setting is in {len(same)} runs (copies?), "
             f"counted once: {same[0].path}; left out: {', '.join(str(run.path) for run in same[1:])}")
    left_out = {id(run) for same in repeated for run in same[1:]}
    return [run for run in runs if id(run) not in left_out]


def group_runs(runs: list[Run], keys: list[str]) -> list[Group]:
    """The finished ``runs`` grouped by their values of ``keys``, ordered by those values."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        settings = {key: run.settings.get(key, ABSENT) for key in keys}
        groups.setdefault(tuple(settings.values()), Group(settings, [])).runs.append(run)
    return sorted(groups.values(), key=lambda group: [sort_key(v) for v in group.settings.values()])


def sort_key(value: Any) -> tuple:
    """Orders values of one key: numbers by size, then text, then anything else; absent last."""
    if value is ABSENT:
        return (4, 0.0, "")
    if isinstance(value, bool) or value is None:
        return (2, 0.0, str(value))
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (3, 0.0, show_value(value))


def show_value(value: Any) -> str:
    """A setting as the tables print it: YAML's words for booleans and null, ``-`` where absent."""
    if value is ABSENT:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number: 0.9985, 1e-05
    if isinstance(value, tuple):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def resolve_key(name: str, runs: list[Run], varying: list[str], option: str) -> str:
    """The dotted config key ``name`` stands for (an alias or a key some run holds); UserError if none."""
    key = ALIASES.get(name, name)
    if any(key in run.settings for run in runs):
        return key
    others = sorted({k for run in runs for k in run.settings} - set(varying))
    raise UserError(
        f"{option} {name!r} is not a config key of these runs; keys that vary: {', '.join(varying) or 'none'}; "
        f"short names: {', '.join(ALIASES)}; other keys: {', '.join(others)}")


def datasets(runs: list[Run]) -> list[str]:
    """The distinct datasets of ``runs``, in sort order."""
    names = {run.settings.get(DATASET, ABSENT) for run in runs}
    return [show_value(name) for name in sorted(names, key=sort_key)]
