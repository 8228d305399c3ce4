"""One job of ``prunekit train`` as Hydra calls it (in this process, or in a joblib, submitit or SLURM
worker): the run, and what a failure or an interruption leaves behind."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError, file_errors
from prunekit.preflight import Plan, resume_command
from prunekit.runlock import exit_code, hold, release
from prunekit.sweeps import FailureLog, record_crash, threads_per_job


def run_job(cfg: DictConfig, plan: Plan, command: list[str]) -> None:
    """Run one job. A single run ends on bad input with one line and exit 2; in a sweep the failure is
    recorded and the other jobs go on. Either way only what the job created is removed."""
    from prunekit.pipeline import Run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    output = next((job for job in plan.jobs if str(job.path) == str(run_dir)), None)

    def discard() -> None:
        if output is not None and not cfg.resume:
            output.discard()  # nothing half-written: a failed run leaves only what was there before it

    threads = threads_per_job(OmegaConf.select(hydra_cfg, "launcher.n_jobs")) if in_sweep else None
    if threads is not None:  # parallel jobs share the cores instead of each taking all of them
        torch.set_num_threads(threads)
    lock = hold(run_dir, "hydra.sweep.dir/subdir" if in_sweep else "hydra.run.dir")  # a single run: its pre-flight's
    try:
        with file_errors():  # a full disk or a missing permission is the user's to fix: one line, exit 2
            Run(cfg, str(run_dir), command, job=hydra_cfg.job.num if in_sweep else None).execute()
    except UserError as err:
        if cfg.debug:
            raise
        discard()
        if not in_sweep:
            print(f"prunekit: error: {err}", file=sys.stderr)
            sys.exit(2)
        FailureLog(hydra_cfg.sweep.dir).record(hydra_cfg.job.num, list(hydra_cfg.overrides.task), str(err))
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (prunekit/runlock.py)
        if in_sweep:
            raise  # the sweep's own process says it, once, whatever launcher ran this job (prunekit/sweeps.py)
        if (run_dir / "checkpoints" / "last.pt").is_file():
            print(f"\nprunekit: interrupted; continue with: {resume_command(list(hydra_cfg.overrides.task), run_dir)}",
                  file=sys.stderr)
        else:
            discard()
            print("\nprunekit: interrupted before the first checkpoint; nothing was kept", file=sys.stderr)
        sys.exit(exit_code(interrupt))
    except Exception:  # a crash: in a sweep it is recorded with its traceback and the other jobs go on
        if cfg.debug or not in_sweep:
            raise
        record_crash(hydra_cfg.sweep.dir, hydra_cfg.job.num, list(hydra_cfg.overrides.task), run_dir)
    finally:
        lock.release()


def report_failures(plan: Plan) -> int:
    """After a sweep: one line per job that failed; the exit code (prunekit/sweeps.py)."""
    if plan.sweep is None:
        return 0
    log = FailureLog(plan.sweep.path)
    failures = log.failures()
    log.clear()
    for failure in failures:
        print(f"prunekit: error: job {failure['job']} ({' '.join(failure['overrides'])}): {failure['error']}",
              file=sys.stderr)
    if plan.sweep.path.is_dir() and not any(p.is_dir() for p in plan.sweep.path.iterdir()):
        plan.sweep.discard()  # every job failed: the sweep directory this command made goes too
    release(plan.sweep.path)
    return FailureLog.exit_code(failures)
