"""inputs_kept.png and inputs_kept.csv: which input features a pruned network still reads, beside how much
the dense network's first layer weighted each of them (its column norms) before pruning."""
from __future__ import annotations

import csv
import io
import pathlib

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from prunekit.explain.features import feature_label
from prunekit.explain.figures import PATH_WEIGHT_CMAP, path_weight_norm, save_figure
from prunekit.explain.registry import FinishedRun, register_figure
from prunekit.layers import group_norms
from prunekit.rundir import atomic_write_bytes


def column_norms(weight: torch.Tensor) -> np.ndarray:
    """The L2 norm of every input group of a first layer's ``weight`` (:func:`prunekit.layers.group_norms`)."""
    return group_norms(weight.detach().float(), 1).cpu().numpy()


@register_figure("inputs_kept", methods=("inputprune",),
                 description="the input features a network still reads, beside the dense first layer's column norms")
def draw_inputs_kept(run: FinishedRun, out_dir: pathlib.Path) -> dict:
    """inputs_kept.png and inputs_kept.csv of the final network, the dense one read from checkpoints/dense.pt."""
    name, first = next((name, m) for name, m in run.model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    dense = run.dense_weights()
    dense_norms = column_norms(dense[f"{name}.weight"]) if dense is not None else None
    write_inputs_kept((column_norms(first.weight) > 0).astype(int), dense_norms, tuple(run.input_shape),
                      isinstance(first, nn.Conv2d), out_dir)
    return {}


def write_inputs_kept(kept: np.ndarray, dense_norms: np.ndarray | None, input_shape: tuple[int, ...],
                      per_channel: bool, out_dir: pathlib.Path) -> None:
    """Draw and list the kept input features. ``kept`` is a 0/1 entry per feature (a flattened pixel, or an
    input channel when ``per_channel``); ``dense_norms`` the dense first layer's column norm per feature (None:
    not known, e.g. a run resumed after its pruning stage)."""
    _write_csv(kept, dense_norms, input_shape, per_channel, out_dir / "inputs_kept.csv")
    panels = 1 + (dense_norms is not None)
    fig = Figure(figsize=(3.4 * panels if not per_channel else 5.0, 3.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if per_channel:
        _channel_bars(axes, kept, dense_norms)
    else:
        _pixel_maps(axes, kept, dense_norms, input_shape)
    fig.suptitle(f"input features kept: {int(kept.sum())} of {kept.size}", fontsize=9)
    save_figure(fig, out_dir / "inputs_kept.png")


def _pixel_maps(axes, kept: np.ndarray, dense_norms: np.ndarray | None, input_shape: tuple[int, ...]) -> None:
    height, width = (input_shape[-2], input_shape[-1]) if len(input_shape) == 3 else (1, kept.size)
    grid = kept.reshape(-1, height, width).max(axis=0)  # a pixel is kept when any of its channels is
    axes[0].imshow(grid, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("kept (white)", fontsize=8)
    if dense_norms is not None:
        importance = dense_norms.reshape(-1, height, width).sum(axis=0)
        axes[1].imshow(importance, cmap=PATH_WEIGHT_CMAP, norm=path_weight_norm(importance))
        axes[1].set_title("dense first-layer column norm", fontsize=8)
    for ax in axes:
        ax.set_axis_off()


def _channel_bars(axes, kept: np.ndarray, dense_norms: np.ndarray | None) -> None:
    ax, channels = axes[0], np.arange(kept.size)
    heights = dense_norms if dense_norms is not None else np.ones(kept.size)
    ax.bar(channels, heights, color=np.where(kept > 0, "#3b75af", "#dddddd"))
    ax.set_xlabel("input channel (blue: kept)")
    ax.set_ylabel("dense first-layer norm" if dense_norms is not None else "")
    for extra in axes[1:]:
        extra.set_axis_off()


def _write_csv(kept: np.ndarray, dense_norms: np.ndarray | None, input_shape: tuple[int, ...], per_channel: bool,
               path: pathlib.Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["feature", "label", "dense_norm"])
    for feature in np.flatnonzero(kept):
        label = f"channel {feature}" if per_channel else feature_label(int(feature), input_shape)
        writer.writerow([int(feature), label, "" if dense_norms is None else f"{dense_norms[feature]:.6g}"])
    atomic_write_bytes(path, buffer.getvalue().encode())
