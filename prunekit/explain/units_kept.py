"""units_kept.png: how many units (neurons or filters) each layer kept, for any run that pruned units."""
from __future__ import annotations

import pathlib

from matplotlib.figure import Figure
from torch import nn

from prunekit.explain.figures import save_figure
from prunekit.explain.registry import FinishedRun, register_figure
from prunekit.layers import prunable_layers


def units_kept(model: nn.Module) -> dict[str, list[int]]:
    """Layer name -> [units with a non-zero weight, all units], for every prunable layer but the classifier."""
    return {name: [int(layer.weight.detach().flatten(1).ne(0).any(1).sum()), layer.weight.shape[0]]
            for name, layer in prunable_layers(model)[:-1]}


def plot_units_kept(model: nn.Module, path: pathlib.Path) -> dict[str, list[int]]:
    """Draw kept against original units per layer (bars, in forward order) into ``path``; returns
    :func:`units_kept` for summary.json."""
    counts = units_kept(model)
    names = list(counts)
    fig = Figure(figsize=(max(4.0, 0.45 * len(names) + 2), 3.2), layout="constrained")
    ax = fig.add_subplot()
    positions = range(len(names))
    ax.bar(positions, [total for _, total in counts.values()], color="#dddddd", label="original")
    ax.bar(positions, [kept for kept, _ in counts.values()], color="#3b75af", label="kept")
    for x, (kept, total) in zip(positions, counts.values()):
        ax.text(x, kept, f"{kept / total:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(positions), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("units (neurons or filters)")
    ax.set_title("units kept per layer")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return counts


@register_figure("units_kept", applies=lambda run: run.cfg.method.granularity == "unit",
                 description="units (neurons or filters) kept per layer, for a run that pruned units")
def draw_units_kept(run: FinishedRun, out_dir: pathlib.Path) -> dict:
    """units_kept.png, and ``units_kept`` for summary.json."""
    return {"units_kept": plot_units_kept(run.model, out_dir / "units_kept.png")}
