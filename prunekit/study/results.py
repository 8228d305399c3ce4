"""A study's results: the choice per arm and grid point (the best validation number among its candidates),
the chosen setting's test numbers over the replicate seeds, study.json, the table and the choices.

study.json::

    {"arms": {ARM: {POINT: {"candidates": [{"overrides": {...}, "val_accuracy": x, "run": "runs/..."}],
                            "chosen": {...}, "runs": ["runs/...", ...],
                            "test_accuracy": {"mean": m, "std": s, "n": n}, "metrics": {NAME: {...}}}}},
     "select": "val_accuracy", "budget": "equal", "seeds": [...], "search_seed": 0}

Paths are relative to the study folder; ``std`` is the sample standard deviation (None for one run).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from prunekit.errors import UserError
from prunekit.report.formats import csv_text, markdown
from prunekit.report.metrics import REPORTED, Estimate
from prunekit.report.tables import SEEDS_NOTE, Table
from prunekit.rundir import atomic_write_bytes
from prunekit.study.runs import find_run, sweep_dir
from prunekit.study.spec import Setting, Study, overrides, point_name

PERCENT = ("accuracy", "top5", "val_accuracy")  # shown in %, as prunekit report does


@dataclass
class Cell:
    """One arm at one grid point: its candidates' search runs and the chosen setting's runs."""

    candidates: list[tuple[Setting, Path | None]]  # each candidate's run at the search seed
    chosen: Setting | None = None
    runs: list[Path] | None = None


def read_summary(run: Path) -> dict:
    try:
        return json.loads((run / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"study: {run} has no readable summary.json ({err}); run the study again") from err


def choose(study: Study, cell: Cell) -> Setting:
    """The candidate with the best ``select`` at the search seed; the first of equals (the study's order)."""
    scores = [(read_summary(run).get(study.cfg.select), index) for index, (_, run) in enumerate(cell.candidates)]
    missing = [overrides(candidate) for (candidate, _), (score, _) in zip(cell.candidates, scores) if score is None]
    if missing:
        raise UserError(f"study: {study.cfg.select} is missing from the summary.json of {missing[0]} (an empty "
                        f"validation split?); give data.val_fraction > 0")
    best = max(scores, key=lambda item: (item[0], -item[1]))[1]
    return cell.candidates[best][0]


def search_cell(study: Study, out: Path, arm: str, point: Setting) -> Cell:
    folder = sweep_dir(out, arm, point)
    return Cell([(c, find_run(folder, c, study.cfg.search_seed)) for c in study.candidates(arm)])


def replicate_runs(study: Study, out: Path, arm: str, point: Setting, chosen: Setting) -> list[Path | None]:
    folder = sweep_dir(out, arm, point)
    return [find_run(folder, chosen, seed) for seed in study.replicate_seeds]


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def _estimate(stats: dict, metric: str) -> Estimate:
    known = next((m for m in REPORTED if m.key == metric), None)  # prunekit report's units and format
    scale, spec = (known.scale, known.spec) if known else (100.0, ".2f") if metric in PERCENT else (1.0, ".4g")
    std = stats["std"] * scale if stats["std"] is not None else None
    return Estimate(stats["mean"] * scale, std, stats["n"], spec)


def record(study: Study, out: Path, cells: dict[str, dict[Setting, Cell]]) -> dict:
    """study.json's content."""
    arms = {}
    for arm, by_point in cells.items():
        arms[arm] = {}
        for point, cell in by_point.items():
            summaries = [read_summary(run) for run in cell.runs]
            numbers = {metric: [s[metric] for s in summaries if isinstance(s.get(metric), (int, float))]
                       for metric in dict.fromkeys(["accuracy", *study.cfg.metrics])}
            arms[arm][point_name(point)] = {
                "candidates": [{"overrides": dict(candidate), study.cfg.select: read_summary(run)[study.cfg.select],
                                "run": str(run.relative_to(out))} for candidate, run in cell.candidates],
                "chosen": dict(cell.chosen), "runs": [str(run.relative_to(out)) for run in cell.runs],
                "test_accuracy": _stats(numbers["accuracy"]),
                "metrics": {metric: _stats(values) for metric, values in numbers.items() if values}}
    return {"study": study.name, "select": study.cfg.select, "budget": study.cfg.budget,
            "search_seed": study.cfg.search_seed, "seeds": study.replicate_seeds, "arms": arms}


def tables(study: Study, result: dict) -> tuple[list[Table], Table]:
    """The results (grid points as rows, arms as columns; one table per metric) and the choices."""
    arms, points = list(result["arms"]), [point_name(p) for p in study.points]
    notes = [f"chosen per arm and row by {study.cfg.select} at seed {study.cfg.search_seed}, over the candidates "
             "in choices.md; the test split chose nothing"]
    if study.cfg.budget == "unequal":
        notes.append("UNEQUAL tuning budget: the arms searched different numbers of candidates")
    results = []
    for metric in dict.fromkeys(["accuracy", *study.cfg.metrics]):
        rows = [[point, *(_estimate(result["arms"][arm][point]["metrics"][metric], metric)
                          if metric in result["arms"][arm][point]["metrics"] else None for arm in arms)]
                for point in points]
        unit = " (%)" if metric in PERCENT else ""
        results.append(Table(f"{study.name}: test {metric}{unit}, {SEEDS_NOTE}", ["setting", *arms], 1, rows,
                             list(notes)))
    rows = []
    for arm in arms:
        for point in points:
            cell = result["arms"][arm][point]
            for candidate in cell["candidates"]:
                mark = "chosen" if candidate["overrides"] == cell["chosen"] else ""
                rows.append([arm, point, ",".join(f"{k}={v}" for k, v in candidate["overrides"].items()) or "-",
                             f"{100 * candidate[study.cfg.select]:.2f}", mark])
    choices = Table(f"{study.name}: every candidate's {study.cfg.select} (%) at seed {study.cfg.search_seed}",
                    ["arm", "setting", "candidate", study.cfg.select, ""], 5, rows)
    return results, choices


def write_text_files(out: Path, results: list[Table], choices: Table) -> None:
    """table.md (every metric), table.csv (test accuracy) and choices.md into the study folder."""
    atomic_write_bytes(out / "table.md", "\n".join(markdown(table) for table in results).encode())
    atomic_write_bytes(out / "table.csv", csv_text(results[0]).encode())
    atomic_write_bytes(out / "choices.md", markdown(choices).encode())
