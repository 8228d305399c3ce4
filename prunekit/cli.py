"""The ``prunekit`` command: ``train`` (a Hydra run or ``-m`` sweep), ``list`` and ``explain``.

Every user error ends as one line on stderr and exit code 2; ``debug=true`` (or PRUNEKIT_DEBUG=1)
shows the traceback instead.
"""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import takewhile
from pathlib import Path

from prunekit.errors import UserError, file_problem

USAGE = """usage: prunekit <command> [arguments]   (prunekit --version prints the version)

commands:
  train [OVERRIDES] [-m]   dense training -> pruning -> compaction -> fine-tuning -> evaluation (Hydra)
                           overrides (method=gumbel method.sparsity=0.95 dataset=fashion_mnist ...);
                           -m sweeps comma-separated values; --cfg job prints the composed config;
                           --help shows Hydra's help with every config group
  study NAME_OR_FILE [OVERRIDES] [--out DIR]
                           a paper's table: search each arm on validation at the search seed, run the
                           chosen settings at the other seeds, write study.json and the table
  list [GROUP=NAME]        the datasets, models, methods, schedules, experiments and figures, one line each;
                           with method=gumbel (or any GROUP=NAME), that entry's options and allowed values
  report DIR [DIR ...]     tables (md, csv, tex) and figures over the runs below the folders, seeds as
                           replicates, the paper's numbers beside ours; --rows/--cols/--metric pivot, --out
  explain RUN_DIR          rebuild a run's interpretability figures from its checkpoint (MLP models)
  sensitivity RUN_DIR [--target-flops F | --target-params P] [--ratios R,...] [--out DIR]
                           prune each channel group of a run's dense network alone at several ratios, measure
                           validation accuracy; with a budget, write per-group ratios for method.layer_sparsity

Add debug=true (or set PRUNEKIT_DEBUG=1) to see the traceback behind an error."""


def _refuse_option(message: str):
    """argparse's error handler for ``train``: one line instead of Hydra's usage text."""
    raise UserError(f"train: {message} (prunekit train --help)")


def _is_override(word: str) -> bool:
    return "=" in word or word.startswith("~")  # KEY=VALUE or ~KEY


def check_split_values(overrides: list[str]) -> None:
    """Refuse words that follow an override and are none themselves: the shell split a value at a space
    (``data.root=/tmp/a b``), so the message shows the override quoted."""
    for index in range(1, len(overrides)):
        if not _is_override(overrides[index]) and "=" in overrides[index - 1]:
            words = takewhile(lambda word: not _is_override(word), overrides[index:])
            joined = " ".join([overrides[index - 1], *words])
            raise UserError(f"{overrides[index]!r} is no override (KEY=VALUE); a value with a space must be quoted: "
                            f"{shlex.quote(joined)}")


def _train(args: list[str], debug: bool) -> int:
    import hydra
    from hydra._internal.utils import get_args_parser  # Hydra has no public parser of its command line

    from prunekit.config import config_dir, register_schemas
    from prunekit.job import launch, run_job
    from prunekit.preflight import Plan, preflight

    parser = get_args_parser()
    parser.error = _refuse_option
    parsed = parser.parse_args(args)
    check_split_values(parsed.overrides)
    plan = Plan(parsed.overrides, [], None)
    if not (parsed.help or parsed.hydra_help or parsed.info or parsed.shell_completion):
        plan = preflight(parsed.overrides, parsed.multirun, writes=not parsed.cfg)
    register_schemas()
    command = ["prunekit", "train", *args]

    @hydra.main(config_path=str(config_dir()), config_name="train", version_base=None)
    def task(cfg) -> None:
        run_job(cfg, plan, command)

    with _hydra_command_line([a for a in args if a not in parsed.overrides] + plan.overrides):
        return launch(task, plan, command)


@contextmanager
def _hydra_command_line(hydra_args: list[str]) -> Iterator[None]:
    """``sys.argv`` as a ``@hydra.main`` function reads it (Hydra takes a command line no other way), with
    HYDRA_FULL_ERROR=1: told to re-raise what escapes a job (an OSError of its own, such as writing .hydra into
    a read-only folder) rather than print a traceback with exit 1, Hydra leaves main() to say it in one line."""
    argv, sys.argv = sys.argv, ["prunekit", *hydra_args]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        sys.argv = argv
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error


def _list(args: list[str]) -> int:
    from prunekit.catalog import print_catalog, print_options

    if len(args) > 1 or (args and "=" not in args[0]):
        raise UserError(f"list takes nothing or one GROUP=NAME (e.g. method=gumbel), got {' '.join(args)!r}")
    print_options(args[0]) if args else print_catalog()
    return 0


def _explain(args: list[str]) -> int:
    from prunekit.explain.command import explain_run

    if len(args) != 1:
        raise UserError(f"explain takes one run directory, got {len(args)} arguments: prunekit explain RUN_DIR")
    explain_run(Path(args[0]))
    return 0


def _dispatch(argv: list[str], debug: bool) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"prunekit {version('prunekit')}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        return _train(rest, debug)
    if command == "list":
        return _list(rest)
    if command == "explain":
        return _explain(rest)
    if command == "report":
        from prunekit.report import main as report

        return report(rest)
    if command == "study":
        from prunekit.study import main as study

        return study(rest)
    if command == "sensitivity":
        from prunekit.sensitivity import main as sensitivity

        return sensitivity(rest)
    raise UserError(f"unknown command {command!r}; choose one of: train, study, list, report, explain, sensitivity "
                    "(prunekit --help)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prunekit`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("PRUNEKIT_DEBUG") == "1" or any(a.lower() == "debug=true" for a in argv)
    try:
        return _dispatch(argv, debug)
    except (UserError, OSError) as err:  # an OSError here is the machine's: a permission, a full disk
        if debug:
            raise
        print(f"prunekit: error: {err if isinstance(err, UserError) else file_problem(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # before a run started (a run's own interruption is handled in its task)
        if debug:
            raise
        from prunekit.runlock import exit_code

        print("\nprunekit: interrupted; nothing was started", file=sys.stderr)
        return exit_code(interrupt)


if __name__ == "__main__":
    sys.exit(main())
