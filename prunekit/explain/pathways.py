"""pathways.png: the surviving network as a layered graph from input features (left) to classes (right).

Edges are red for positive and blue for negative weights, with line width proportional to |w|; dead
units are left out. Beyond ``MAX_DRAWN_EDGES`` alive weights only the strongest are drawn (the title
says so), which keeps the figure legible and its rendering time bounded for a barely pruned network.
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from prunekit.explain.features import feature_label
from prunekit.explain.figures import save_figure
from prunekit.explain.graph import SurvivingNetwork
from prunekit.explain.layering import unit_positions

MAX_DRAWN_EDGES = 3000
MAX_LINE_WIDTH = 3.5
MIN_LINE_WIDTH = 0.2  # a proportional width would make the weakest edges invisible
POSITIVE = (0.84, 0.15, 0.16)
NEGATIVE = (0.12, 0.47, 0.71)
HEADING_PT = 36.0  # two lines of 9 pt text plus their offset
MIN_LABEL_FONT_PT = 4.0  # labels packed into a smaller font than this are unreadable anyway


def strongest_edges(magnitude: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` largest magnitudes (all if fewer), weakest first so strong ones draw on top."""
    keep = np.arange(magnitude.size)
    if magnitude.size > limit:
        keep = np.argpartition(magnitude, magnitude.size - limit)[magnitude.size - limit:]
    return keep[np.argsort(magnitude[keep], kind="stable")]


def _edge_segments(net: SurvivingNetwork, positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All alive weights as line segments ``(n, 2, 2)`` between unit positions, and their values."""
    segments, values = [], []
    for layer in range(len(net.weights)):
        source, target, weight = net.edges(layer)
        start = np.column_stack([np.full(source.size, layer), positions[layer][source]])
        end = np.column_stack([np.full(target.size, layer + 1), positions[layer + 1][target]])
        segments.append(np.stack([start, end], axis=1))
        values.append(weight)
    return np.concatenate(segments), np.concatenate(values)


def plot_pathways(net: SurvivingNetwork, input_shape: tuple[int, ...], class_names: Sequence[str],
                  path: pathlib.Path) -> None:
    """Draw the surviving network of ``net`` into ``path``, at most ``MAX_DRAWN_EDGES`` edges of it."""
    positions = unit_positions(net)
    counts = net.alive_counts
    segments, values = _edge_segments(net, positions)
    keep = strongest_edges(np.abs(values), MAX_DRAWN_EDGES)
    segments, values = segments[keep], values[keep]

    height = float(np.clip(0.13 * max(counts) + 2.0, 5.0, 20.0))
    plot_height_pt = height * 72 * 0.85  # the axes take roughly 85 % of the figure's height
    fig = Figure(figsize=(max(9.0, 2.8 * len(counts)), height), layout="constrained")
    axis = fig.add_subplot()
    axis.set_axis_off()
    axis.set_title(_title(net.weight_count, keep.size, counts))
    if values.size:
        widths = np.maximum(MAX_LINE_WIDTH * np.abs(values) / np.abs(values).max(), MIN_LINE_WIDTH)
        colours = np.where((values > 0)[:, None], POSITIVE, NEGATIVE)
        axis.add_collection(LineCollection(segments, colors=colours, linewidths=widths, alpha=0.7))
    _draw_units(axis, positions, counts)
    _label_ends(axis, positions, input_shape, class_names, plot_height_pt)
    axis.set_xlim(-0.7, len(counts) - 0.3)
    # Inverted (feature 0 and class 0 at the top), with HEADING_PT of room above for the layer headings.
    axis.set_ylim(1.01, -HEADING_PT / plot_height_pt)
    axis.legend(handles=[Line2D([], [], color=POSITIVE, label="positive weight"),
                         Line2D([], [], color=NEGATIVE, label="negative weight")],
                loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    save_figure(fig, path)


def _title(weight_count: int, drawn: int, counts: list[int]) -> str:
    if weight_count == 0:
        return "No surviving path from any input feature to any class"
    title = f"Surviving pathways: {weight_count} weights, alive units per layer {counts}"
    if drawn < weight_count:
        title += f"\nonly the strongest {drawn} of {weight_count} weights are drawn"
    return title


def _draw_units(axis, positions: list[np.ndarray], counts: list[int]) -> None:
    last = len(positions) - 1
    for layer, position in enumerate(positions):
        alive = position[~np.isnan(position)]
        size = float(np.clip(2000.0 / max(alive.size, 1), 3.0, 30.0))
        axis.scatter(np.full(alive.size, layer), alive, s=size, color="black", zorder=3, linewidths=0)
        name = "inputs" if layer == 0 else "classes" if layer == last else f"hidden {layer}"
        # Offset in points, so the heading sits just above the layer whatever the figure's height.
        axis.annotate(f"{name}\n({counts[layer]} alive)", xy=(layer, 0.0), xytext=(0, 6),
                      textcoords="offset points", ha="center", va="bottom", fontsize=9)


def _label_ends(axis, positions: list[np.ndarray], input_shape: tuple[int, ...],
                class_names: Sequence[str], plot_height_pt: float) -> None:
    """Label input features on the left and classes on the right, each unless they would overprint."""
    last = len(positions) - 1
    ends = [(0, -0.04, "right", lambda f: feature_label(f, input_shape)),
            (last, last + 0.04, "left", lambda c: class_names[c])]
    for layer, x, align, label in ends:
        units = np.flatnonzero(~np.isnan(positions[layer]))
        fontsize = min(9.0, 0.8 * plot_height_pt / max(units.size, 1))
        if fontsize < MIN_LABEL_FONT_PT:
            continue
        for unit in units:
            axis.text(x, positions[layer][unit], label(int(unit)), ha=align, va="center",
                      fontsize=fontsize)
