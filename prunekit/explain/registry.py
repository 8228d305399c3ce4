"""The figures and measures of a finished run: two registries, and the two calls that the evaluate stage and
``prunekit explain`` both make, so that explain redraws every figure a run draws.

A figure is a function ``(run, out_dir) -> entries``: it draws into ``out_dir`` (a run's figures/) and returns
what it measured for summary.json. A measure is a function ``(run) -> entries`` that every run records, with
figures or without. Each registers itself in the file that draws or computes it::

    @register_figure("relevance_maps", methods=("lrp",))
    def draw_relevance_maps(run: FinishedRun, out_dir: Path) -> dict: ...

and says when it applies: ``methods`` (the method names it is for; any method when not given) and ``applies``
(a predicate on the run, e.g. ``lambda run: run.is_mlp``). The stages call :func:`measures` and
:func:`draw_figures` and know no figure and no method by name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from prunekit.checkpoints import read_state_dict
from prunekit.data.dataset import Dataset
from prunekit.layers import is_mlp
from prunekit.registry import Registry
from prunekit.rundir import RunDir

# prunekit's own figures and measures are in the modules of prunekit/explain, a plug-in's in its own package.
FIGURES: Registry[Callable] = Registry("figure", "figures", packages=("prunekit.explain",))
MEASURES: Registry[Callable] = Registry("measure", "measures", packages=("prunekit.explain",))


@dataclass(eq=False)
class FinishedRun:
    """A finished run as its figures and measures see it, the same whether the evaluate stage has just finished
    it or ``prunekit explain`` reads it back from its directory."""

    model: nn.Module  # the final network in its original shapes, pruned weights exactly zero
    input_shape: tuple[int, ...]  # of the dataset's samples, before any input feature was removed
    cfg: DictConfig  # the run's config
    run_dir: RunDir
    load_dataset: Callable[[], Dataset]  # the run's dataset, loaded only when a figure or measure reads data
    _computed: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def method(self) -> str:
        return self.cfg.method.name

    @cached_property
    def is_mlp(self) -> bool:
        return is_mlp(self.model)

    @cached_property
    def dataset(self) -> Dataset:
        """The run's dataset (its training split is what reference samples and input clusters are drawn from)."""
        return self.load_dataset()

    def dense_weights(self) -> dict | None:
        """The dense network's state_dict (checkpoints/dense.pt, the network the pruning stage started from), or
        None when the run directory has none."""
        path = self.run_dir.checkpoint("dense")
        return read_state_dict(path) if path.is_file() else None

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once for this run: a measure and a figure that need the same thing share it."""
        if key not in self._computed:
            self._computed[key] = compute()
        return self._computed[key]


def _register(registry: Registry, name: str, methods: Sequence[str] | None, applies: Callable | None,
              description: str | None) -> Callable:
    return registry.register(name, description=description, methods=tuple(methods) if methods else None,
                             applies=applies)


def register_figure(name: str, *, methods: Sequence[str] | None = None,
                    applies: Callable[[FinishedRun], bool] | None = None, description: str | None = None) -> Callable:
    """Decorator: draw the decorated ``(run, out_dir) -> entries`` for every run of ``methods`` (any method when
    None) for which ``applies(run)`` holds (always when None)."""
    return _register(FIGURES, name, methods, applies, description)


def register_measure(name: str, *, methods: Sequence[str] | None = None,
                     applies: Callable[[FinishedRun], bool] | None = None, description: str | None = None) -> Callable:
    """Decorator: record the decorated ``(run) -> entries`` in the summary of every run it applies to (as for
    :func:`register_figure`), with figures or without."""
    return _register(MEASURES, name, methods, applies, description)


def _applying(registry: Registry, run: FinishedRun):
    for entry in registry.entries():
        methods, applies = entry.extra["methods"], entry.extra["applies"]
        if (methods is None or run.method in methods) and (applies is None or applies(run)):
            yield entry.target


def measures(run: FinishedRun) -> dict:
    """The summary.json entries of every measure that applies to ``run``."""
    entries: dict = {}
    for measure in _applying(MEASURES, run):
        entries.update(measure(run))
    return entries


def draw_figures(run: FinishedRun, out_dir: Path) -> dict:
    """Draw every figure that applies to ``run`` into ``out_dir``; returns their summary.json entries."""
    entries: dict = {}
    for figure in _applying(FIGURES, run):
        entries.update(figure(run, out_dir))
    return entries
