"""One job of ``prunekit train`` as Hydra calls it (in this process, or in a joblib, submitit or SLURM
worker): the run, and what a failure or an interruption leaves behind."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError
from prunekit.preflight import Plan, resume_command
from prunekit.sweeps import FailureLog, threads_per_job


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
    try:
        Run(cfg, str(run_dir), command, job=hydra_cfg.job.num if in_sweep else None).execute()
    except UserError as err:
        if cfg.debug:
            raise
        discard()
        if not in_sweep:
            print(f"prunekit: error: {err}", file=sys.stderr)
            sys.exit(2)
        FailureLog(hydra_cfg.sweep.dir).record(hydra_cfg.job.num, list(hydra_cfg.overrides.task), str(err))
    except KeyboardInterrupt:
        if in_sweep:
            print(f"\nprunekit: interrupted; the same command continues the sweep: {shlex.join(command)}",
                  file=sys.stderr)
        elif (run_dir / "checkpoints" / "last.pt").is_file():
            print(f"\nprunekit: interrupted; continue with: {resume_command(list(hydra_cfg.overrides.task), run_dir)}",
                  file=sys.stderr)
        else:
            discard()
            print("\nprunekit: interrupted before the first checkpoint; nothing was kept", file=sys.stderr)
        sys.exit(130)


def report_failures(plan: Plan) -> int:
    """After a sweep: one line per job that failed on bad input; the exit code (2 if any failed)."""
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
    return 2 if failures else 0
