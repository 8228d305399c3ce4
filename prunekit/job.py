"""One job of ``prunekit train`` as Hydra calls it (in this process, or in a joblib, submitit or SLURM
worker), and the one failure policy around it (lightning-hydra-template's ``task_wrapper``): bad input, an
interruption and a crash each end as one outcome, said or recorded, and only what the job created is removed.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from prunekit.distributed.launch import RanksFailed, join_slurm, run_ranks, run_slurm_task, slurm_rank
from prunekit.errors import UserError, file_errors
from prunekit.ownership import OutputDir
from prunekit.preflight import Plan, resume_command
from prunekit.runlock import exit_code, hold, release
from prunekit.sweeps import FailureLog, record_crash, say_interrupted, threads_per_job


@dataclass
class Job:
    """A job as Hydra launched it: its config, where it writes, and what the pre-flight found there."""

    cfg: DictConfig
    run_dir: Path
    number: int | None  # its number in a sweep; None for a single run
    sweep_dir: str
    overrides: list[str]
    output: OutputDir | None  # the directory as it was before the command (None: not one the pre-flight saw)

    @classmethod
    def launched(cls, cfg: DictConfig, plan: Plan) -> Job:
        """The job Hydra is running now, with ``cfg``, for the command that made ``plan``."""
        hydra = HydraConfig.get()
        run_dir = Path(hydra.runtime.output_dir)
        output = next((job for job in plan.jobs if str(job.path) == str(run_dir)), None)
        number = hydra.job.num if hydra.mode == RunMode.MULTIRUN else None
        sweep_dir = hydra.sweep.dir if number is not None else ""  # a single run never resolves it
        return cls(cfg, run_dir, number, sweep_dir, list(hydra.overrides.task), output)

    def discard(self) -> None:
        """Remove what this job wrote (never a resumed run's): a failed run leaves only what was there before."""
        if self.output is not None and not self.cfg.resume:
            self.output.discard()


@contextmanager
def outcome(job: Job) -> Iterator[None]:
    """Hold ``job``'s directory while the job runs and turn however it ends into its outcome:

    - bad input (UserError, or a full disk or missing permission): nothing of the job is kept; a single run
      ends with one line and exit 2, a sweep's job is recorded and the other jobs go on;
    - an interruption (Ctrl-C, SIGTERM): a single run says the command that continues it, or that nothing was
      kept before its first checkpoint; a sweep's is said once, by the sweep's own process (:func:`launch`);
    - a crash: a single run's traceback is shown; a sweep's job is recorded with its traceback beside what it
      wrote, which stays for the same command to continue it; a rank of a run on several that died or crashed
      ends a single run as an interruption does, with one line.

    ``debug=true`` lets every exception through."""
    in_sweep = job.number is not None
    lock = hold(job.run_dir, "hydra.sweep.dir/subdir" if in_sweep else "hydra.run.dir")  # a run: its pre-flight's
    try:
        with file_errors():
            yield
    except UserError as err:
        if job.cfg.debug:
            raise
        job.discard()
        if not in_sweep:
            print(f"prunekit: error: {err}", file=sys.stderr)
            sys.exit(2)
        FailureLog(job.sweep_dir).record(job.number, job.overrides, str(err))
    except KeyboardInterrupt as interrupt:
        if in_sweep:  # the sweep's own process says it, once, whatever launcher ran this job
            FailureLog(job.sweep_dir).record(job.number, job.overrides, "interrupted",
                                             interrupted=exit_code(interrupt))
            raise
        _stopped(job, "interrupted")
        sys.exit(exit_code(interrupt))
    except RanksFailed as failure:
        if job.cfg.debug:
            raise
        if in_sweep:
            record_crash(job.sweep_dir, job.number, job.overrides, job.run_dir)
        else:
            _stopped(job, f"error: {failure}")
            sys.exit(1)
    except Exception:
        if job.cfg.debug or not in_sweep:
            raise
        record_crash(job.sweep_dir, job.number, job.overrides, job.run_dir)
    finally:
        lock.release()


def _stopped(job: Job, why: str) -> None:
    """Say that a single run stopped before its end: how to continue it, or that nothing was kept before its
    first checkpoint (and then nothing is)."""
    if (job.run_dir / "checkpoints" / "last.pt").is_file():
        print(f"\nprunekit: {why}; continue with: {resume_command(job.overrides, job.run_dir)}", file=sys.stderr)
    else:
        job.discard()
        print(f"\nprunekit: {why} before the first checkpoint; nothing was kept", file=sys.stderr)


def run_job(cfg: DictConfig, plan: Plan, command: list[str]) -> None:
    """Hydra's task: run one job of ``command`` under :func:`outcome`, as ``distributed.nproc`` ranks when
    several; as one rank of it when a SLURM job's tasks are the ranks (rank 0's task speaks for the job)."""
    from prunekit.pipeline import Run

    job = Job.launched(cfg, plan)
    if job.number is not None:  # parallel jobs share the cores instead of each taking all of them
        threads = threads_per_job(OmegaConf.select(HydraConfig.get(), "launcher.n_jobs"))
        if threads is not None:
            torch.set_num_threads(threads)
    rank = slurm_rank()
    sweep = Path(job.sweep_dir) if job.number is not None else None
    if rank:  # a task of a SLURM job whose tasks are the ranks, not the first
        run_slurm_task(cfg, job.run_dir, command, job.number, sweep)
        return
    with outcome(job):
        if rank == 0:
            join_slurm(cfg)
        if cfg.distributed.nproc > 1:
            run_ranks(cfg, job.run_dir, command, job.number, sweep)
        else:
            Run(cfg, str(job.run_dir), command, job=job.number, sweep=sweep).execute()


def launch(task: Callable[[], None], plan: Plan, command: list[str]) -> int:
    """Run Hydra's ``task`` (a run, or every job of a sweep) and return the command's exit code; after a sweep,
    one line per job that failed (prunekit/sweeps.py), and one line when Ctrl-C or SIGTERM stopped it."""
    interrupted = None
    try:
        task()
    except KeyboardInterrupt as interrupt:  # a sweep's jobs, in this process or in a launcher's workers
        if plan.sweep is None:
            raise
        interrupted = exit_code(interrupt)
    code, stopped = report_failures(plan)
    # A signal to the whole group may reach only a worker: its job's record says so all the same.
    interrupted = interrupted or stopped
    if interrupted:
        say_interrupted(command)
        return interrupted
    return code


def report_failures(plan: Plan) -> tuple[int, int | None]:
    """After a sweep: one line per job that failed; the exit code (prunekit/sweeps.py) and that of an interruption
    a job recorded (None without one)."""
    if plan.sweep is None:
        return 0, None
    log = FailureLog(plan.sweep.path)
    records = log.failures()
    log.clear()
    failures = [record for record in records if not record.get("interrupted")]
    for failure in failures:
        print(f"prunekit: error: job {failure['job']} ({' '.join(failure['overrides'])}): {failure['error']}",
              file=sys.stderr)
    if plan.sweep.path.is_dir() and not any(p.is_dir() for p in plan.sweep.path.iterdir()):
        plan.sweep.discard()  # every job failed: the sweep directory this command made goes too
    release(plan.sweep.path)
    return FailureLog.exit_code(failures), FailureLog.interruption(records)
