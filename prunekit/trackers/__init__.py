"""Experiment trackers: a run's epochs, summary and figures sent to TensorBoard, MLflow or Weights & Biases as
well as to metrics.jsonl (always written: ``logger=csv``, the default), chosen on the command line
(``logger=tensorboard``, ``logger=[tensorboard,mlflow]``), offline by default, and only by rank 0.

A tracker is one file: a :class:`Tracker` registered with :func:`register_tracker`, its typed config beside it,
which is also its config option (``logger=<name>`` composes ``logger.<name>`` from the config, no YAML needed),
so a plug-in package adds one the same way::

    @dataclass
    class MyConfig:
        project: str = "pruning"

    @register_tracker("mine", config=MyConfig, requires="mine_sdk", extra="prunekit-mine")
    class Mine(Tracker): ...

:mod:`prunekit.trackers.session` runs the chosen trackers beside the run directory; a resumed run continues each
tracker's own run without logging a step twice.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from prunekit.errors import UserError
from prunekit.registry import Registry

TRACKERS: Registry[type] = Registry("tracker", "logger", packages=("prunekit.trackers",))
ALWAYS = "csv"  # metrics.jsonl: written whatever else is chosen


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker knows of the run it follows: its directory, its name (a sweep's job: its folder under the
    sweep), the sweep's folder (None for a single run) and the resolved config."""

    dir: Path
    name: str
    sweep: Path | None
    config: dict

    @property
    def home(self) -> Path:
        """Where a tracker that groups runs keeps its local store: the sweep's folder, else the run's."""
        return self.sweep if self.sweep is not None else self.dir


class Tracker:
    """One tracker following one run. ``saved`` is what :meth:`state` returned when the run started, None on a
    fresh start: a resumed run gives it back so the tracker continues its own run (same id)."""

    def __init__(self, cfg: DictConfig, run: TrackedRun, saved: dict | None):
        self.cfg, self.run = cfg, run

    def state(self) -> dict:
        """What identifies this tracker's run, kept in the run directory for a resumption."""
        return {}

    def log_config(self, config: dict[str, str]) -> None:
        """The resolved config as hyperparameters (flattened: ``method.sparsity`` -> value), once per run."""

    def log_epoch(self, stage: str, epoch: int, step: int, values: dict[str, float]) -> None:
        """One epoch record of ``stage``: its numbers (``train_loss``, ``val_accuracy``, ...); ``step`` counts
        the run's epoch records from 1 across its stages."""

    def log_summary(self, values: dict[str, float]) -> None:
        """The final summary's numbers (accuracy, density, the efficiency figures, latency), flattened."""

    def log_figures(self, figures: list[Path]) -> None:
        """The run's figures (PNG files)."""

    def close(self, finished: bool) -> None:
        """The run ended: ``finished`` when it wrote its summary, else it stopped (and may be resumed)."""


def register_tracker(name: str, *, config: type, requires: str | None = None, extra: str | None = None,
                     description: str | None = None) -> Callable[[type], type]:
    """Decorator: make the tracker available as ``logger=<name>``. ``requires`` is the module it imports (a run
    that chooses it without that module installed is refused with ``pip install <extra>``)."""
    # The config is the option itself, stored as the config group's entry: logger=<name> composes logger.<name>.
    ConfigStore.instance().store(group="logger", name=name, node={name: config})
    return TRACKERS.register(name, config=config, description=description, requires=requires, extra=extra)


def check_installed(logger: DictConfig) -> None:
    """Refuse, before the run, a chosen tracker whose library is not installed, naming the pip extra."""
    for name in logger:
        entry = TRACKERS.get(str(name))
        module = entry.extra["requires"]
        if module is not None and importlib.util.find_spec(module) is None:
            raise UserError(f"logger={name} needs the {module} package, which is not installed: "
                            f"pip install '{entry.extra['extra']}'")
