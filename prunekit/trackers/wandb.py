"""``logger=wandb``: Weights & Biases, offline by default: the run is written to ``<run dir>/wandb/offline-run-*``
and nothing leaves the machine until ``wandb sync`` uploads it (``logger.wandb.mode=online`` logs as it goes).

The mode is ``logger.wandb.mode`` when given, else the WANDB_MODE environment variable, else ``offline``. A sweep's
jobs are one W&B group, named after the sweep's folder, one W&B run per job.

Logged: the resolved config (W&B's run config, nested as in config.yaml), every epoch record as ``<stage>/<key>``
plotted against ``<stage>/epoch``, the summary's numbers as the run's summary (``accuracy``, ``density``, ...)
and the figures as images. A resumed run continues the same W&B run id; offline, each process writes its own
``offline-run-*`` folder and ``wandb sync`` uploads them, in order, into one run.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from prunekit.errors import UserError
from prunekit.trackers import TrackedRun, Tracker, register_tracker

MODES = ("offline", "online", "disabled")


@dataclass
class WandbConfig:
    project: str = "prunekit"
    # offline, online or disabled; null: WANDB_MODE when set, else offline
    mode: str | None = None
    entity: str | None = None  # the W&B team or user (null: the account's default)


def resolve_mode(mode: str | None) -> str:
    """``mode`` when given, else WANDB_MODE, else offline; anything but offline, online or disabled is refused."""
    if mode is not None:
        chosen, source = mode, "logger.wandb.mode"
    else:
        chosen, source = os.environ.get("WANDB_MODE") or "offline", "WANDB_MODE"  # set but empty: unset
    if chosen not in MODES:
        raise UserError(f"{source}={chosen!r} is not a W&B mode for prunekit; use one of {', '.join(MODES)}")
    return chosen


@register_tracker("wandb", config=WandbConfig, requires="wandb", extra="prunekit[wandb]",
                  description="Weights & Biases, offline in the run directory by default (wandb sync uploads)")
class Wandb(Tracker):
    """One W&B run in ``<run dir>/wandb``; the config is given to it when it starts (so ``log_config`` has nothing
    left to do)."""

    def __init__(self, cfg: DictConfig, run: TrackedRun, saved: dict | None):
        import wandb

        super().__init__(cfg, run, saved)
        mode = resolve_mode(cfg.mode)
        # The id is ours, kept in trackers.json, so a resumed run (a new process) reopens the same W&B run; the
        # step is kept too: offline, W&B cannot ask the server where the run stopped.
        self.id = saved["id"] if saved else secrets.token_hex(4)
        self.step = saved["step"] if saved else 0
        self.stages: set[str] = set()
        # prunekit's console is its own: no banner, no capture of stdout, no system-metrics sampler
        settings = wandb.Settings(mode=mode, silent=True, console="off", x_disable_stats=True)
        try:
            # The process-wide settings too: wandb's own usage telemetry follows them, not init's, and would
            # otherwise contact the W&B server from an offline run.
            wandb.setup(settings=settings)
            self.wb = wandb.init(
                dir=run.dir, project=cfg.project, entity=cfg.entity, id=self.id, resume="allow", name=run.name,
                group=run.sweep.name if run.sweep is not None else None, config=run.config, settings=settings,
                # a sweep's jobs run one after the other in one process, each its own W&B run
                reinit="create_new")
        except wandb.errors.Error as error:  # online without `wandb login`, the server unreachable: the setup's
            reason = str(error).strip().splitlines()[0]
            raise UserError(f"logger=wandb could not start a W&B run in {mode} mode: {reason}") from None

    def state(self) -> dict:
        return {"id": self.id, "step": self.step}

    def log_epoch(self, stage: str, epoch: int, step: int, values: dict[str, float]) -> None:
        if stage not in self.stages:  # each stage's curves against its own epochs, not the run's step
            self.wb.define_metric(f"{stage}/epoch")
            self.wb.define_metric(f"{stage}/*", step_metric=f"{stage}/epoch")
            self.stages.add(stage)
        row = {f"{stage}/{key}": value for key, value in values.items()} | {f"{stage}/epoch": epoch}
        # W&B's step must grow: the run's own count across stages; committed now, so a killed run keeps its epochs
        self.wb.log(row, step=step, commit=True)
        self.step = step

    def log_summary(self, values: dict[str, float]) -> None:
        self.wb.summary.update(values)

    def log_figures(self, figures: list[Path]) -> None:
        import wandb

        if figures:  # one row after the last epoch: W&B shows media from the history
            self.wb.log({f"figures/{path.stem}": wandb.Image(str(path)) for path in figures}, step=self.step + 1,
                        commit=True)

    def close(self, finished: bool) -> None:
        self.wb.finish(exit_code=0 if finished else 1)
