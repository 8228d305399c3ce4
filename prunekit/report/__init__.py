"""``prunekit report DIR [DIR ...]``: the runs below some folders as tables, figures and a paper comparison.

Runs are grouped by every config key that varies, and by the data they loaded, except the seed (seeds are
replicates, a repeated seed counts once); each group gets the mean, sample standard deviation and count of
its metrics, latencies without the unstably timed ones. The report goes into ``<first DIR>/report/`` (or
``--out DIR``), a folder of its own (report/folder.py): table.md, table.csv, table.tex, accuracy_vs_density
and accuracy_vs_flops as PNG and PDF (one of each per dataset when datasets are mixed), and paper.md when
the runs carry an experiment's ``paper:`` block. Every problem with the input is a UserError.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from prunekit.errors import UserError, warn
from prunekit.report.folder import REPORT, ReportFolder
from prunekit.report.formats import csv_text, latex, markdown, rich_table
from prunekit.report.groups import datasets, distinct_runs, group_runs, resolve_key, varying_keys
from prunekit.report.metrics import ACCURACY, resolve_metric, warn_not_numbers
from prunekit.report.paper import compare, paper_blocks
from prunekit.report.plots import figures
from prunekit.report.runs import find_runs
from prunekit.report.selection import chosen_table
from prunekit.report.tables import pivot_table, summary_table

__all__ = ["main"]
UNBOUNDED_WIDTH = 1000  # characters: wider than any table, so that rich never shortens a cell


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one-line UserErrors, not usage text and an exit."""

    def error(self, message: str):
        raise UserError(f"report: {message} (prunekit report --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prunekit report", description=(
        "Tables (md, csv, tex), figures and a comparison with the paper for the runs below DIR: runs are "
        "grouped by every config key that varies except the seed, seeds are averaged."))
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders of runs or sweeps")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the report folder (default: report/ in the "
                        "first DIR): a new or empty folder, or one an earlier report made")
    parser.add_argument("--rows", metavar="KEY", help="pivot: config key of the rows, e.g. method.sparsity (seed: "
                        "one row per seed, nothing averaged)")
    parser.add_argument("--cols", metavar="KEY", help="pivot: config key of the columns, e.g. method.name")
    parser.add_argument("--metric", metavar="NAME", help="pivot: the summary.json number in the cells (accuracy)")
    parser.add_argument("--choose", metavar="KEY[,KEY]", help="tuned keys (e.g. prune.lr): per combination of the "
                        "other settings, keep the value with the best mean validation accuracy and show its test "
                        "accuracy only")
    return parser


def main(argv: list[str]) -> int:
    """Run ``prunekit report`` with ``argv`` (the arguments after ``report``); returns 0.

    Raises UserError, one line, for bad arguments, folders without runs, an unknown key or metric, and
    a report folder that an earlier report did not make or that holds files it did not write.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # --help printed the help
        return int(stop.code or 0)
    if (args.rows is None) != (args.cols is None) or (args.metric and args.rows is None):
        raise UserError("report: a pivot needs both --rows KEY and --cols KEY (and optionally --metric NAME)")
    if args.choose and args.rows:
        raise UserError("report: --choose and a pivot (--rows/--cols) are two different tables; give one of them")
    folder = ReportFolder(args.out if args.out is not None else args.dirs[0] / REPORT)
    runs = distinct_runs(find_runs(args.dirs))
    finished = [run for run in runs if run.finished]
    unfinished = [f"unfinished, not aggregated: {run.path}" for run in runs if not run.finished]
    if not finished:
        raise UserError(f"nothing to report below {', '.join(map(str, args.dirs))}: no run there has a "
                        f"readable summary.json ({len(unfinished)} unfinished)")
    warn_not_numbers(finished)
    names = datasets(finished)
    if len(names) > 1:
        warn(f"the runs are of {len(names)} datasets ({', '.join(names)}); they are reported per dataset")
    if "seed" in (args.rows, args.cols):  # each seed on its own row or column: nothing is averaged over seeds
        for run in finished:
            run.settings["seed"] = run.summary.get("seed")
    keys = varying_keys(finished)
    groups = group_runs(finished, keys)
    if args.choose:
        tuned = [resolve_key(name, finished, keys, "--choose") for name in args.choose.split(",")]
        table = chosen_table(groups, keys, tuned)
    elif args.rows is None:
        table = summary_table(groups, keys)
    else:
        rows, cols = (resolve_key(name, finished, keys, option) for name, option in
                      ((args.rows, "--rows"), (args.cols, "--cols")))
        metric = resolve_metric(args.metric, groups) if args.metric else ACCURACY
        table = pivot_table(groups, keys, rows, cols, metric)
    table.notes += unfinished
    comparisons = [compare(paper, members) for paper, members in paper_blocks(runs)]

    # A terminal's tables fit its width; a pipe or log file has none, and gets them whole, as table.md.
    console = Console(width=None if sys.stdout.isatty() else UNBOUNDED_WIDTH)
    for shown in [table, *comparisons]:
        console.print(rich_table(shown))
    folder.write_text("table.md", markdown(table))
    folder.write_text("table.csv", csv_text(table))
    folder.write_text("table.tex", latex(table))
    if comparisons:
        folder.write_text("paper.md", "\n".join(markdown(comparison) for comparison in comparisons))
    for stem, fig in figures(groups).items():
        folder.write_figure(stem, fig)
    folder.remove_stale()
    console.print(f"wrote {', '.join(folder.written)} into {folder.path}", highlight=False, soft_wrap=True)
    return 0
