"""The published numbers beside ours: an experiment preset's ``paper:`` block, compared cell by cell.

The block (it lands in each run's config under ``paper``)::

    paper:
      title: "..."                  # plus free keys: authors, arxiv, ...
      source: "Table 1"             # where the numbers are printed
      metric: accuracy              # the summary.json key they are in
      scale: 100                    # the paper prints metric * scale; optional, default 1
      rows: method.sparsity         # config key labelling the rows (short names allowed)
      cols: method.name             # config key labelling the columns
      table: {0.9985: {gumbel: null}}   # row value -> column value -> number; null: claimed, no number
      note: "..."

Each distinct block is compared with the runs that carry it. Row and column values match as numbers
when both read as one (0.3, "0.3" and 0.30 are one value), else as text regardless of case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prunekit.errors import warn
from prunekit.report.groups import ALIASES, group_runs, show_value, sort_key, varying_keys
from prunekit.report.metrics import Estimate, estimate, unstable_notes
from prunekit.report.runs import CONFIG, Run, hashable
from prunekit.report.tables import Table

STRUCTURE = ("title", "source", "metric", "scale", "rows", "cols", "table", "note")
REQUIRED = ("title", "metric", "rows", "cols", "table")
CLAIMED = "claimed, no number"  # a published cell whose value is null
MIN_DECIMALS = 2  # ours and the difference get at least these decimals, more if the paper prints more


@dataclass
class Paper:
    """A validated paper block; ``table`` maps (row value, column value) to a number or None."""

    title: str
    source: str
    metric: str
    scale: float
    rows: str  # dotted config keys (a short name such as "sparsity" resolved)
    cols: str
    table: dict[tuple[Any, Any], float | None]
    note: str | None
    extra: dict[str, Any]  # the free keys: authors, arxiv, ...


def paper_blocks(runs: list[Run]) -> list[tuple[Paper, list[Run]]]:
    """Each distinct, valid paper block with the finished runs that carry it (invalid ones: a warning)."""
    carriers: dict[Any, tuple[dict, list[Run]]] = {}
    for run in runs:
        if run.paper:
            carriers.setdefault(hashable(run.paper), (run.paper, []))[1].append(run)
    parsed = []
    for block, members in carriers.values():
        paper = _parse(block, f"the paper block of {members[0].path / CONFIG}", members)
        if paper is not None:
            parsed.append((paper, [run for run in members if run.finished]))
    return parsed


def _parse(block: dict, name: str, runs: list[Run]) -> Paper | None:
    missing = [key for key in REQUIRED if block.get(key) is None]
    if missing:
        warn(f"{name} has no {', '.join(missing)}; no comparison with the paper (keys: {', '.join(STRUCTURE)})")
        return None
    rows, cols = (ALIASES.get(block[k], block[k]) for k in ("rows", "cols"))
    unknown = [key for key in (rows, cols) if not any(key in run.settings for run in runs)]
    if unknown:
        warn(f"{name} labels its table by {', '.join(unknown)}, which no run's config holds; no comparison")
        return None
    cells, bad = {}, []
    table = block["table"]
    for row, columns in (table.items() if isinstance(table, dict) else []):
        if not isinstance(columns, dict):
            bad.append(show_value(row))
            continue
        for col, value in columns.items():
            if value is not None and _as_number(value) is None:
                bad.append(f"{show_value(row)} / {show_value(col)}")
            cells[(row, col)] = _as_number(value)
    scale = block.get("scale", 1)
    # An empty table is a statement (the paper publishes nothing for this setting), not a malformed one.
    if bad or not isinstance(table, dict) or _as_number(scale) is None:
        warn(f"{name} is not of the form `table: {{row value: {{column value: number or null}}}}` with a "
             f"numeric scale (wrong at: {', '.join(bad) or 'table or scale'}); no comparison with the paper")
        return None
    extra = {key: value for key, value in block.items() if key not in STRUCTURE}
    return Paper(block["title"], block.get("source") or "paper", block["metric"], _as_number(scale), rows, cols,
                 cells, block.get("note"), extra)


def compare(paper: Paper, runs: list[Run]) -> Table:
    """The published table beside ours, one line per cell: published, ours (mean ± std (n), in the
    paper's scale) and ours - published; the cells only one side has are listed in the notes."""
    keys = varying_keys(runs)
    others = [key for key in keys if key not in (paper.rows, paper.cols)]
    decimals = max([MIN_DECIMALS] + [_decimals(v) for v in paper.table.values() if v is not None])
    spec = f".{decimals}f"
    lines, matched, measured_only = [], set(), []
    groups = group_runs(runs, keys)
    for group in groups:
        row, col = group.value(paper.rows), group.value(paper.cols)
        cell = next((c for c in paper.table if _same(c[0], row) and _same(c[1], col)), None)
        setting = [", ".join(f"{k}={show_value(group.value(k))}" for k in others)] if others else []
        ours = estimate(group.values(paper.metric), paper.scale, spec)
        lines.append(_line(paper, row, col, setting, cell, ours, spec))
        if cell is None:
            measured_only.append((row, col))
        matched.add(cell)
    unmeasured = [cell for cell in paper.table if cell not in matched]
    lines += [_line(paper, *cell, [""] if others else [], cell, None, spec) for cell in unmeasured]
    lines.sort(key=lambda line: _cell_order(line[0]))
    header = [paper.rows, paper.cols] + (["setting"] if others else []) + [
        f"published ({paper.source})", "ours", "ours - published"]
    notes = [f"{key}: {show_value(value)}" for key, value in paper.extra.items()]
    notes += [f"published cells without a measured counterpart: {_cells_text(unmeasured)}",
              f"measured cells without a published number: {_cells_text(measured_only)}"]
    notes += [f"note: {paper.note}"] if paper.note else []
    notes += unstable_notes([paper.metric], groups)
    title = f"{paper.title}: {paper.metric} x {paper.scale:g}, published ({paper.source}) beside ours"
    return Table(title, header, len(header) - 3, [values for _, values in lines], notes)


def _line(paper: Paper, row: Any, col: Any, setting: list[str], cell: tuple | None, ours: Estimate | None,
          spec: str) -> tuple[tuple, list]:
    """One comparison line, and the row and column values it sorts by."""
    published = paper.table.get(cell) if cell is not None else None
    shown = "-" if cell is None else CLAIMED if published is None else format(published, spec)
    difference = format(ours.mean - published, "+" + spec) if ours and published is not None else "-"
    return (row, col), [show_value(row), show_value(col)] + setting + [shown, ours, difference]


def _cells_text(cells: list[tuple]) -> str:
    ordered = sorted(set(cells), key=_cell_order)  # a cell measured under several other settings is one cell
    return "; ".join(f"{show_value(row)} / {show_value(col)}" for row, col in ordered) or "none"


def _cell_order(cell: tuple) -> list:
    return [_order(value) for value in cell]


def _same(published: Any, measured: Any) -> bool:
    a, b = _as_number(published), _as_number(measured)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return show_value(published).strip().casefold() == show_value(measured).strip().casefold()


def _order(value: Any) -> tuple:
    # A paper's "0.5" sorts among the measured 0.2 and 0.8, not after every number.
    number = _as_number(value)
    return sort_key(value if number is None else number)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _decimals(value: float) -> int:
    text = repr(float(value))
    return 0 if "e" in text or text.endswith(".0") else len(text.split(".")[1])
