"""Sweeps that survive interruption and failure.

Re-running the same ``-m`` command with the same ``hydra.sweep.dir`` picks up where the sweep stopped:
every job's directory is inspected (:func:`job_status`) and the job is skipped (finished with this config),
resumed (it has a last.pt of this config), restarted (it holds only the first files of an attempt of this
config) or run. A directory that holds a run of another config is refused: that is another experiment.

A job that fails on bad input does not stop the sweep: it is recorded (:class:`FailureLog`, files in the
sweep directory, so that jobs in other processes or on other machines can report) and the command ends
non-zero with one line per failed job once the others have finished.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError
from prunekit.ownership import OutputDir
from prunekit.rundir import CHECKPOINTS, SUMMARY

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


class FailureLog:
    """One small JSON file per failed job in ``<sweep dir>/.prunekit-failures``."""

    def __init__(self, sweep_dir: str | Path):
        self.dir = Path(sweep_dir) / ".prunekit-failures"

    def record(self, number: int, overrides: list[str], message: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{number}.json"
        path.write_text(json.dumps({"job": number, "overrides": overrides, "error": message, "pid": os.getpid()}))

    def failures(self) -> list[dict]:
        """The recorded failures, by job number."""
        if not self.dir.is_dir():
            return []
        records = [json.loads(p.read_text()) for p in self.dir.glob("*.json")]
        return sorted(records, key=lambda r: r["job"])

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def threads_per_job(n_jobs: int | None) -> int | None:
    """torch threads for one of ``n_jobs`` parallel jobs so that together they do not exceed the cores
    (None: a launcher that runs one job at a time, leave torch's default)."""
    if n_jobs is None:
        return None
    cores = os.cpu_count() or 1
    parallel = cores if n_jobs < 0 else min(n_jobs, cores)
    return max(1, cores // max(parallel, 1))
