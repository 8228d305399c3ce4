"""The report's tables as data, before any file format: one row per setting, or a pivot of one metric.

A table has label columns (setting values, as text) followed by measured columns (an Estimate per cell,
None where a setting has no such number), so every format can print or split the cells as it needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from prunekit.errors import UserError
from prunekit.report.groups import ABSENT, HEADLINE_KEYS, Group, show_value, sort_key
from prunekit.report.metrics import REPORTED, Estimate, Metric, present, unstable_notes

SEEDS_NOTE = "mean ± std (n) over seeds; std is the sample standard deviation, absent for one seed"


@dataclass
class Table:
    """A titled table: ``labels`` leading text columns, then value columns (Estimates; the paper
    comparison also puts published numbers there, as text)."""

    title: str
    header: list[str]
    labels: int
    rows: list[list[str | Estimate | None]]
    notes: list[str] = field(default_factory=list)  # lines shown under the table (markdown and terminal)


def summary_table(groups: list[Group], keys: list[str]) -> Table:
    """One row per setting: its values of ``keys`` (the keys that vary), then every reported metric some
    run has."""
    metrics = present(REPORTED, groups)
    if not keys:  # every run has one setting: label its row with what it is
        keys = [key for key in HEADLINE_KEYS if groups[0].value(key) is not ABSENT]
    rows = [[show_value(group.value(key)) for key in keys] + [metric.of(group) for metric in metrics]
            for group in groups]
    return Table(f"Results per setting, {SEEDS_NOTE}", keys + [m.label for m in metrics], len(keys), rows,
                 unstable_notes([m.key for m in metrics], groups))


def pivot_table(groups: list[Group], keys: list[str], rows_key: str, cols_key: str, metric: Metric) -> Table:
    """``metric`` with a row per value of ``rows_key`` and a column per value of ``cols_key``.

    The other keys that vary stay as leading label columns, so that no cell mixes two settings, except
    those that only follow the columns (one value per column, such as a method's own normalisation): they
    are said once, in a note under the table.
    """
    if rows_key == cols_key:
        raise UserError(f"--rows and --cols are both {rows_key!r}; give two different keys")
    others = [key for key in keys if key not in (rows_key, cols_key)]
    per_column = {key: _per_column(groups, key, cols_key) for key in others}
    notes = [f"{key} per {cols_key}: " + ", ".join(f"{show_value(c)}: {v}" for c, v in sorted(
        values.items(), key=lambda item: sort_key(item[0]))) for key, values in per_column.items() if values]
    labels = [key for key in others if not per_column[key]] + [rows_key]
    cells: dict[tuple, dict] = {}
    columns: dict = {}
    for group in groups:
        row = tuple(group.value(key) for key in labels)
        column = group.value(cols_key)
        columns[column] = None
        cells.setdefault(row, {})[column] = metric.of(group)
    order = sorted(columns, key=sort_key)
    rows = [[show_value(v) for v in row] + [cells[row].get(column) for column in order]
            for row in sorted(cells, key=lambda row: [sort_key(v) for v in row])]
    title = f"{metric.label}: {rows_key} (rows) by {cols_key} (columns), {SEEDS_NOTE}"
    return Table(title, labels + [show_value(c) for c in order], len(labels), rows,
                 notes + unstable_notes([metric.key], groups))


def _per_column(groups: list[Group], key: str, cols_key: str) -> dict:
    """Column value -> the one value ``key`` has in that column, or {} when some column holds several."""
    seen: dict = {}
    for group in groups:
        seen.setdefault(group.value(cols_key), set()).add(show_value(group.value(key)))
    return {column: next(iter(values)) for column, values in seen.items()} if all(
        len(values) == 1 for values in seen.values()) else {}
