"""``prunekit study NAME_OR_FILE [OVERRIDES] [--out DIR]``: a paper's table, honestly, in one command.

The protocol (prunekit/study/spec.py): every run checked first; per arm and grid point, a search at the search
seed over the arm's candidates; the candidate with the best validation number chosen; the chosen setting run
at the other seeds; then study.json, table.md (mean ± sample std (n) per grid point and arm), choices.md
(every candidate's validation number) and, through ``prunekit report`` over the chosen runs, its figures and
the paper's table beside ours when the runs carry an experiment's ``paper:`` block. The runs are ordinary
sweeps (Hydra's launchers: ``hydra/launcher=joblib`` among the overrides runs each search in parallel), so
running the same command again continues where it stopped and runs only what is new.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from prunekit.errors import UserError
from prunekit.rundir import atomic_write_bytes
from prunekit.study.results import Cell, choose, record, replicate_runs, search_cell, tables, write_text_files
from prunekit.study.runs import check_runs, search_overrides, sweep_command
from prunekit.study.spec import Study, load_study, overrides

USAGE = "prunekit study NAME_OR_FILE [OVERRIDES] [--out DIR]"
# The study folder is prunekit's own: made by a study (or empty when it came) and marked so; a later run of the
# same study writes there again, any other non-empty folder is refused before anything runs.
MARKER = ".prunekit-study"


def claim(out: Path, name: str) -> None:
    """Make ``out`` the folder of study ``name``, or check that it is already; UserError otherwise."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; the study needs a folder there (--out DIR)")
    marker = out / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            made_by = json.loads(marker.read_text()).get("study")
        except (OSError, ValueError, AttributeError) as err:
            raise UserError(f"{marker} is not a study folder's record ({err}); give another folder with --out") from err
        if made_by != name:
            raise UserError(f"{out} holds study {made_by!r}, not {name!r}; give another folder with --out DIR")
        return
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} holds files and was not made by prunekit study (no {MARKER}); nothing was run: "
                        "give a new folder with --out DIR")
    atomic_write_bytes(marker, (json.dumps({"study": name, "note": "written by prunekit study"}) + "\n").encode())


def _arguments(argv: list[str]) -> tuple[str, list[str], Path | None]:
    if not argv or argv[0].startswith("-"):
        raise UserError(f"study: give a study name or file: {USAGE}")
    rest, out = list(argv[1:]), None
    if "--out" in rest:
        at = rest.index("--out")
        if at + 1 >= len(rest):
            raise UserError(f"study: --out needs a folder: {USAGE}")
        out = Path(rest.pop(at + 1))
        rest.pop(at)
    unknown = [arg for arg in rest if arg.startswith("-")]
    if unknown:
        raise UserError(f"study: {unknown[0]} is no option of prunekit study: {USAGE}")
    return argv[0], rest, out


def _sweep(args: list[str], again: str) -> None:
    from prunekit.cli import main as prunekit

    code = prunekit(args)
    if code:  # the sweep said what failed; the runs that finished are kept for the next try
        print(f"prunekit: the study stopped; the same command continues it: {again}", file=sys.stderr)
        raise SystemExit(code)


def run_study(study: Study, out: Path, again: str = "") -> dict:
    """Run ``study`` into the folder ``out`` (search, choice, replicates) and write its results; returns
    study.json's content. ``again`` is the command that continues it, for the message of a failed sweep."""
    check_runs(study)
    claim(out, study.name)
    cells: dict[str, dict] = {arm: {} for arm in study.cfg.arms}
    for arm in study.cfg.arms:
        for point in study.points:
            _sweep(sweep_command(study, out, arm, point, search_overrides(study, arm)), again)
            cell = search_cell(study, out, arm, point)
            cell.chosen = choose(study, cell)
            others = ",".join(str(seed) for seed in study.replicate_seeds[1:])
            if others:
                _sweep(sweep_command(study, out, arm, point, [*overrides(cell.chosen), f"seed={others}"]), again)
            cell.runs = replicate_runs(study, out, arm, point, cell.chosen)
            cells[arm][point] = _complete(cell, arm)
    result = record(study, out, cells)
    atomic_write_bytes(out / "study.json", (json.dumps(result, indent=2) + "\n").encode())
    results, choices = tables(study, result)
    write_text_files(out, results, choices)
    _report(out, [run for by_point in cells.values() for cell in by_point.values() for run in cell.runs])
    return result


def _complete(cell: Cell, arm: str) -> Cell:
    if any(run is None for _, run in cell.candidates) or any(run is None for run in cell.runs):
        raise UserError(f"study: a run of arm {arm!r} is missing after its sweep; run the study again")
    return cell


def _report(out: Path, runs: list[Path]) -> None:
    """prunekit report over the chosen runs, into out/report: its figures, and the paper's table beside ours."""
    from prunekit.report import main as report

    report([*map(str, runs), "--out", str(out / "report")])


def main(argv: list[str]) -> int:
    """Run ``prunekit study`` with ``argv`` (the arguments after ``study``); returns the exit code."""
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}\n\n{__doc__.split(chr(10) + chr(10))[1]}")
        return 0
    name, extra, out = _arguments(argv)
    study = load_study(name, extra)
    again = shlex.join(["prunekit", "study", *argv])
    run_study(study, out if out is not None else Path("studies") / study.name, again)
    return 0
