"""Sweeps that survive interruption and failure.

Re-running the same ``-m`` command with the same ``hydra.sweep.dir`` picks up where the sweep stopped: the
pre-flight decides once, for every job (:func:`decide`), whether it is skipped (finished with this config),
resumed (it has a last.pt of this config), restarted (it holds only the first files of an attempt of this
config) or run, and prunekit's sweeper (hydra_plugins/prunekit_sweeper) launches what it decided. A directory
that holds a run of another config is refused: that is another experiment.

A job that fails does not stop the sweep: it is recorded (:class:`FailureLog`, files in the sweep directory,
so that jobs in other processes or on other machines can report) and the command ends with one line per
failed job once the others have finished: exit 2 when every failure was bad input, 1 when a job crashed (an
exception that is no UserError, a bug or an unforeseen fault: :func:`record_crash`). Bad input leaves
nothing of the job; a crash leaves what the job wrote and its traceback (``CRASH_REPORT``), and the same
command continues the job as it continues an interrupted one. A sweep stopped by Ctrl-C or SIGTERM says so
once, from its own process (:func:`say_interrupted`), whatever launcher ran the jobs.
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import sys
import traceback
from collections import Counter
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError
from prunekit.ownership import OutputDir
from prunekit.rundir import CHECKPOINTS, CRASH_REPORT, SUMMARY, RunDir
from prunekit.runlock import require_free

DONE, RESUME, RESTART, FRESH = "done", "resume", "restart", "fresh"


def job_status(job_dir: Path, cfg: DictConfig, number: int) -> str:
    """What to do with job ``number`` whose directory is ``job_dir`` and whose config is ``cfg`` (without
    its hydra node): DONE, RESUME, RESTART or FRESH; UserError when the directory holds another run."""
    from prunekit.pipeline import comparable, config_differences

    saved_config = job_dir / ".hydra" / "config.yaml"
    present = OutputDir(job_dir, existed=job_dir.is_dir()).present()
    if not present:
        return FRESH
    if not saved_config.is_file():
        raise UserError(f"job {number}'s directory {job_dir} holds {', '.join(present)} but no .hydra/config.yaml; "
                        "it is not a job of this sweep: choose another hydra.sweep.dir")
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_config), resolve=True)
    except Exception as err:  # noqa: BLE001 - an unreadable record cannot prove it is the same job
        raise UserError(f"{saved_config} cannot be read ({type(err).__name__}); "
                        "choose another hydra.sweep.dir") from err
    current = comparable(cfg)
    differing = config_differences({k: v for k, v in saved.items() if k in current}, current)
    if differing:
        raise UserError(f"job {number}'s directory {job_dir} holds a run of another config (differs in: "
                        f"{', '.join(differing)}); the same sweep command continues a sweep, another one needs "
                        "another hydra.sweep.dir")
    if (job_dir / SUMMARY).is_file():
        return DONE
    if (job_dir / CHECKPOINTS / "last.pt").is_file():
        return RESUME
    return RESTART


def clear_attempt(job_dir: Path) -> None:
    """Remove what an earlier attempt of the same job wrote before its first checkpoint (RESTART)."""
    OutputDir(job_dir, existed=True).discard()


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The overrides of every job of ``prunekit train -m OVERRIDES``, in launch order (the job numbers): the
    product of each key's values, the first key varying slowest, a key given twice taking its last values, as
    Hydra's basic sweeper orders them. The pre-flight and prunekit's sweeper both number jobs with it."""
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise UserError(f"{override.input_line} is an interval; a sweep takes a list of values (a,b,c) or "
                            "range(start,stop,step)")
    return [list(job) for job in itertools.product(*values.values())]


def decide(jobs: list[tuple[OutputDir, DictConfig]]) -> list[str]:
    """What becomes of each job of a sweep, given its directory and its config (without the hydra node), in
    job order: DONE, RESUME, RESTART or FRESH (:func:`job_status`). Called once the sweep's directory is
    locked; UserError, and nothing changed, when a job's directory is held by a running command, holds another
    run, or has a damaged last.pt; only once every job passed is what restarted jobs wrote removed."""
    from prunekit.pipeline import load_resume_state

    for output, _ in jobs:  # a job still run by a sweep whose command was killed: never cleared under it
        require_free(output.path, "hydra.sweep.dir/subdir")
    statuses = []
    for number, (output, cfg) in enumerate(jobs):
        statuses.append(job_status(output.path, cfg, number))
        if statuses[-1] == RESUME:
            load_resume_state(cfg, RunDir(output.path))  # a damaged last.pt is named now, not halfway through
    for (output, _), status in zip(jobs, statuses):
        if status == RESTART:
            clear_attempt(output.path)
        if status in (RESUME, RESTART):
            (output.path / CRASH_REPORT).unlink(missing_ok=True)  # a crashed attempt's traceback: it runs again
    counts = Counter(statuses)
    if counts[DONE] or counts[RESUME] or counts[RESTART]:
        print(f"sweep: {len(jobs)} jobs: {counts[DONE]} finished (skipped), {counts[RESUME]} resumed, "
              f"{counts[RESTART] + counts[FRESH]} to run", flush=True)
    return statuses


class FailureLog:
    """One small JSON file per failed job in ``<sweep dir>/.prunekit-failures``."""

    def __init__(self, sweep_dir: str | Path):
        self.dir = Path(sweep_dir) / ".prunekit-failures"

    def record(self, number: int, overrides: list[str], message: str, crashed: bool = False,
               interrupted: int | None = None) -> None:
        """Record job ``number`` as failed on bad input, or as ``crashed``, with its one-line ``message``; or as
        ``interrupted`` with the exit code of the interruption (the sweep's process says it, even when the signal
        reached only the job's worker)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{number}.json"
        path.write_text(json.dumps({"job": number, "overrides": overrides, "error": message, "crashed": crashed,
                                    "interrupted": interrupted, "pid": os.getpid()}))

    def failures(self) -> list[dict]:
        """The recorded failures, by job number."""
        if not self.dir.is_dir():
            return []
        records = [json.loads(p.read_text()) for p in self.dir.glob("*.json")]
        return sorted(records, key=lambda r: r["job"])

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def exit_code(failures: list[dict]) -> int:
        """The sweep's exit code: 1 when a job crashed, 2 when jobs failed on bad input only, else 0."""
        return 1 if any(f.get("crashed") for f in failures) else 2 if failures else 0

    @staticmethod
    def interruption(records: list[dict]) -> int | None:
        """The exit code of an interruption some job recorded (130 Ctrl-C, 143 SIGTERM), None without one."""
        return max((r["interrupted"] for r in records if r.get("interrupted")), default=None)


def record_crash(sweep_dir: str | Path, number: int, overrides: list[str], job_dir: Path) -> None:
    """Record job ``number`` as crashed by the exception being handled, whose traceback goes to ``job_dir``'s
    ``CRASH_REPORT``; what the job wrote stays, for the same command to continue it."""
    error = sys.exc_info()[1]
    report = job_dir / CRASH_REPORT
    try:
        report.write_text(traceback.format_exc())
        where = f"traceback in {report}"
    except OSError as unwritable:
        where = f"its traceback could not be written to {report}: {unwritable.strerror}"
    reason = (str(error).splitlines() or [""])[0][:80]
    what = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    FailureLog(sweep_dir).record(number, overrides, f"crashed with {what} ({where})", crashed=True)


def say_interrupted(command: list[str]) -> None:
    """The one line of a sweep stopped by Ctrl-C or SIGTERM, said by the sweep's own process."""
    print(f"\nprunekit: interrupted; the same command continues the sweep: {shlex.join(command)}", file=sys.stderr)


def threads_per_job(n_jobs: int | None) -> int | None:
    """torch threads for one of ``n_jobs`` parallel jobs so that together they do not exceed the cores
    (None: a launcher that runs one job at a time, leave torch's default)."""
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    parallel = cores if n_jobs < 0 else min(n_jobs, cores)
    return max(1, cores // max(parallel, 1))
