"""``prunekit sensitivity RUN_DIR``: how much each coupled channel group can lose, measured one group at a time.

After Distiller's ``--sense`` and fasterai's sensitivity analyser: the dense network of a run (its
checkpoints/dense.pt) is pruned one group at a time to each ratio by the run's criterion (or ``--method``),
and its validation accuracy measured (prunekit/sensitivity/analysis.py). With ``--target-flops F`` or
``--target-params P`` the curves become per-group ratios that meet the budget (prunekit/sensitivity/allocation.py),
written as layer_sparsity.yaml for ``prunekit train ... method.layer_sparsity=<that file>``. Everything goes into
``RUN_DIR/sensitivity`` (or ``--out DIR``), a folder of the command's own (prunekit/sensitivity/outputs.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prunekit.errors import UserError
from prunekit.sensitivity.allocation import Allotment, allocate
from prunekit.sensitivity.analysis import DEFAULT_RATIOS, Sensitivity, analyse
from prunekit.sensitivity.outputs import (CSV, FIGURE, LAYER_SPARSITY, MARKDOWN, SensitivityFolder, allotment_line,
                                          csv_text, figure_png, markdown, yaml_text)
from prunekit.sensitivity.source import load_run, read_config

__all__ = ["main"]
FOLDER = "sensitivity"  # the default output folder, inside the run's
UNBOUNDED_WIDTH = 1000  # characters: a pipe or a log file gets the table whole


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one-line UserErrors, not usage text and an exit."""

    def error(self, message: str):
        raise UserError(f"sensitivity: {message} (prunekit sensitivity --help)")


def _fraction(option: str, upper_open: bool = False):
    """The parser of one fraction in (0, 1] (or (0, 1) with ``upper_open``) given to ``option``."""
    allowed = "fractions in (0, 1)" if upper_open else "a fraction in (0, 1]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (0 < value < 1 if upper_open else 0 < value <= 1):
            raise UserError(f"sensitivity: {option} {text!r} is not allowed; give {allowed}")
        return value
    return parse


def _ratios(text: str) -> tuple[float, ...]:
    parse = _fraction("--ratios", upper_open=True)
    return tuple(sorted({parse(word) for word in text.split(",")}))


def _parser() -> argparse.ArgumentParser:
    about = __doc__.split("\n\n")[1].replace("\n", " ").replace("``", "")
    parser = _Parser(prog="prunekit sensitivity", description=about)
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="a prunekit run whose dense stage is done")
    parser.add_argument("--ratios", type=_ratios, default=DEFAULT_RATIOS, metavar="R,R,...",
                        help="fractions of a group's channels to prune, each in (0, 1) (default 0.1,0.2,...,0.9)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--target-flops", type=_fraction("--target-flops"), metavar="F",
                        help="write layer_sparsity.yaml: per-group ratios keeping at most F of the dense FLOPs")
    budget.add_argument("--target-params", type=_fraction("--target-params"), metavar="P",
                        help="the same for the fraction of the dense parameters")
    parser.add_argument("--method", metavar="NAME", help="rank channels by this unit criterion instead of the "
                        "run's method (its defaults, with the run's min_keep, round_to and group_reduction)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the output folder (default RUN_DIR/sensitivity): "
                        "new, empty, or one an earlier analysis made")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to evaluate")
    return parser


def _table(sensitivity: Sensitivity, allotment: Allotment | None) -> Table:
    table = Table(title=f"validation accuracy, one group pruned alone (dense {sensitivity.dense_accuracy:.4f})",
                  title_justify="left")
    for column in ["group", "channels", *(f"{r:g}" for r in sensitivity.ratios)]:
        table.add_column(column, justify="left" if column == "group" else "right")
    if allotment is not None:
        table.add_column("ratio chosen", justify="right", style="bold")
    for group, points in sensitivity.groups().items():
        chosen = [f"{allotment.ratios[group]:g}"] if allotment is not None else []
        table.add_row(group, str(points[0].channels), *(f"{p.val_accuracy:.4f}" for p in points), *chosen)
    return table


def main(argv: list[str]) -> int:
    """Run ``prunekit sensitivity`` with ``argv`` (the arguments after ``sensitivity``); returns the exit code.
    A budget the curves cannot meet is a UserError after the table and figure are written."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help printed the help
        return int(stop.code or 0)
    cfg = read_config(args.run)  # a folder that is no run is refused before the output folder is looked at
    folder = SensitivityFolder(args.out if args.out is not None else args.run / FOLDER)
    console = Console(width=None if sys.stdout.isatty() else UNBOUNDED_WIDTH)
    run = load_run(args.run, cfg, args.method, args.device)
    scores = run.scores()
    sensitivity = analyse(run, scores, args.ratios, lambda line: console.print(line, highlight=False))
    kind, target = ("flops", args.target_flops) if args.target_flops is not None else ("params", args.target_params)
    allotment, refusal = None, None
    if target is not None:
        try:
            allotment = allocate(run, scores, sensitivity, kind, target)
        except UserError as error:  # said after what was measured is written
            refusal = error
    title = f"sensitivity of {cfg.model.name} on {cfg.data.name}, criterion {run.method.name}"
    folder.write(CSV, csv_text(sensitivity).encode(), args.run)
    folder.write(MARKDOWN, markdown(sensitivity, title, allotment).encode(), args.run)
    folder.write(FIGURE, figure_png(sensitivity, title), args.run)
    if allotment is not None:
        folder.write(LAYER_SPARSITY, yaml_text(allotment, args.run).encode(), args.run)
    folder.remove_stale()
    console.print(_table(sensitivity, allotment))
    if allotment is not None:
        console.print(allotment_line(allotment), highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(folder.written)} into {folder.path}", highlight=False, soft_wrap=True)
    if refusal is not None:
        raise refusal
    if allotment is not None:
        console.print(f"use it: prunekit train ... method={run.method.name} method.granularity=unit "
                      f"method.layer_sparsity={folder.path / LAYER_SPARSITY}", highlight=False, soft_wrap=True)
    return 0
