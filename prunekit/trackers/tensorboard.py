"""``logger=tensorboard``: TensorBoard event files in the run directory (``<run dir>/tensorboard``), written with
torch's SummaryWriter. A sweep's jobs each write their own folder under the sweep, so ``tensorboard --logdir
<sweep dir>`` shows them side by side, one run per job.

Scalars: ``<stage>/<figure>`` at the epoch of that stage (``dense/val_accuracy`` at 1, 2, ...), the summary as
``summary/<figure>`` at step 0, the config as hyperparameters (the HParams dashboard, against the summary's
accuracy, density and FLOPs) and as one text block (``config``), and the figures as images. A resumed
run appends to the same folder; the records it already holds are not sent again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from prunekit.config import ranged
from prunekit.trackers import TrackedRun, Tracker, register_tracker

FOLDER = "tensorboard"
HPARAM_METRICS = ("summary/accuracy", "summary/val_accuracy", "summary/density", "summary/flops_fraction")


@dataclass
class TensorBoardConfig:
    # seconds between flushes of the event file to disk (TensorBoard reads it while the run goes on)
    flush_secs: int = ranged(30, 1)


@register_tracker("tensorboard", config=TensorBoardConfig, requires="tensorboard", extra="prunekit[tensorboard]",
                  description="TensorBoard event files in the run directory (tensorboard --logdir)")
class TensorBoard(Tracker):
    """Event files in ``<run dir>/tensorboard``."""

    def __init__(self, cfg: DictConfig, run: TrackedRun, saved: dict | None):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(cfg, run, saved)
        self.writer = SummaryWriter(log_dir=str(run.dir / FOLDER), flush_secs=cfg.flush_secs)

    def state(self) -> dict:
        return {"log_dir": FOLDER}

    def log_config(self, config: dict[str, str]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # The HParams dashboard (each run's config beside its final figures), written into this run's own event
        # file: SummaryWriter.add_hparams would open a folder of its own per call.
        for summary in hparams(config, dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)
        table = "\n".join(f"| {key} | {value} |" for key, value in config.items())
        self.writer.add_text("config", "| key | value |\n| --- | --- |\n" + table, 0)

    def log_epoch(self, stage: str, epoch: int, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"{stage}/{key}", value, epoch)

    def log_summary(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"summary/{key}", value, 0)

    def log_figures(self, figures: list[Path]) -> None:
        from PIL import Image

        for path in figures:
            with Image.open(path) as image:
                self.writer.add_image(f"figures/{path.stem}", np.asarray(image.convert("RGB")), 0, dataformats="HWC")

    def close(self, finished: bool) -> None:
        self.writer.close()
