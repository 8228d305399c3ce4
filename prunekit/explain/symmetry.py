"""Feature symmetry of the surviving network: mirror scores, interchangeable feature groups, symmetry.png.

Mirror score of an importance map M (the H x W path-weight map) against its mirror F (M flipped
left-right, or up-down)::

    score = 1 - sum|M - F| / (2 * sum|M|)

It lies in [0, 1] because sum|F| = sum|M| bounds sum|M - F| by 2 * sum|M|: 1 for a map equal to its
mirror, 0 when the map and its mirror never overlap (all importance in the left half, say), and in
between the share of importance that has a mirror partner of the same size. An all-zero map (no
surviving path) has no score (None), nor has tabular input, which has no geometry to mirror.

Interchangeable groups are our reading of the paper's "feature symmetry", whose definition we do not
have: input features whose alive outgoing weights go to exactly the same set of first-hidden-layer
units (the classes, for a network without hidden layers). The network sees such features only through the
same units, so permuting them changes nothing in the topology. Only features with at least one alive
connection count, and only groups of two or more.
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from prunekit.explain.features import feature_count, feature_label, is_image, to_grid
from prunekit.explain.figures import PATH_WEIGHT_CMAP, path_weight_norm, save_figure
from prunekit.explain.graph import SurvivingNetwork

MAX_GROUPS = 20  # groups reported in summary.json
DRAWN_GROUPS = 10  # groups coloured in the figure: one colour of tab10 each
GROUP_COLOURS = [to_rgb(f"C{i}") for i in range(DRAWN_GROUPS)]
UNGROUPED_COLOUR = (0.8, 0.8, 0.8)


def mirror_score(grid: np.ndarray, axis: int) -> float | None:
    """Symmetry of ``grid`` under flipping ``axis`` (1: left-right, 0: up-down); None if it is all 0."""
    total = np.abs(grid).sum()
    if total == 0:
        return None
    return float(1.0 - np.abs(grid - np.flip(grid, axis=axis)).sum() / (2.0 * total))


def interchangeable_groups(net: SurvivingNetwork, limit: int = MAX_GROUPS) -> list[list[int]]:
    """Groups (size >= 2, largest first, at most ``limit``) of features wired to the same hidden units."""
    links = net.weights[0] != 0
    by_targets: dict[bytes, list[int]] = {}
    for feature in np.flatnonzero(links.any(axis=0)):
        by_targets.setdefault(links[:, feature].tobytes(), []).append(int(feature))
    groups = sorted((g for g in by_targets.values() if len(g) >= 2), key=lambda g: (-len(g), g[0]))
    return groups[:limit]


def plot_symmetry(path_weight: np.ndarray, connections: np.ndarray, groups: list[list[int]],
                  scores: dict[str, float | None], input_shape: tuple[int, ...],
                  path: pathlib.Path) -> None:
    """Draw symmetry.png: map, its two mirrors and the groups for images; the groups alone for tabular."""
    if is_image(input_shape):
        fig = Figure(figsize=(16, 4.6), layout="constrained")
        mirrors_axes = _draw_mirrors(fig, to_grid(path_weight, input_shape), scores)
        _draw_group_pixels(mirrors_axes[3], connections, groups, input_shape)
    else:
        fig = Figure(figsize=(10, 5), layout="constrained")
        _draw_group_members(fig.subplots(), groups, input_shape)
        fig.suptitle("Interchangeable input features (mirror scores need image input)")
    save_figure(fig, path)


def _score_text(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.2f}"


def _draw_mirrors(fig: Figure, grid: np.ndarray, scores: dict[str, float | None]) -> np.ndarray:
    """Draw the map and its mirrors in the first three of four panels; return the four axes."""
    axes = fig.subplots(1, 4)
    norm = path_weight_norm(grid)  # one scale for all three, so the mirrors compare pixel by pixel
    panels = [(grid, "path-weight importance"),
              (np.flip(grid, axis=1), f"left-right mirror: score {_score_text(scores['left_right'])}"),
              (np.flip(grid, axis=0), f"up-down mirror: score {_score_text(scores['up_down'])}")]
    for axis, (image, title) in zip(axes, panels):
        shown = axis.imshow(image, cmap=PATH_WEIGHT_CMAP, norm=norm, interpolation="nearest")
        axis.set_title(title)
    fig.colorbar(shown, ax=list(axes[:3]), shrink=0.85, label="path weight (sqrt scale)")
    fig.suptitle("Feature symmetry: score = 1 - sum|M - mirror(M)| / (2 sum|M|)")
    return axes


def _draw_group_pixels(axis, connections: np.ndarray, groups: list[list[int]],
                       input_shape: tuple[int, ...]) -> None:
    # White: unused pixel; grey: used but in no drawn group; colours: the largest groups.
    used = to_grid(connections, input_shape) > 0
    picture = np.ones((*used.shape, 3))
    picture[used] = UNGROUPED_COLOUR
    drawn = groups[:DRAWN_GROUPS]
    # Paint the smallest first so that, where channels overlap on one pixel, the larger group wins.
    for index in reversed(range(len(drawn))):
        indicator = np.zeros(connections.size)
        indicator[drawn[index]] = 1.0
        picture[to_grid(indicator, input_shape) > 0] = GROUP_COLOURS[index]
    axis.imshow(picture, interpolation="nearest")
    axis.set_title(f"{len(groups)} interchangeable groups, largest {len(drawn)} coloured" if groups
                   else "no interchangeable features")
    handles = [Patch(color=GROUP_COLOURS[i], label=f"group {i + 1}: {len(g)} features")
               for i, g in enumerate(drawn)]
    if handles:
        axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                    frameon=False)


def _draw_group_members(axis, groups: list[list[int]], input_shape: tuple[int, ...]) -> None:
    if not groups:
        axis.text(0.5, 0.5, "no two features share the same hidden units", ha="center", va="center")
        axis.set_axis_off()
        return
    for rank, group in enumerate(groups):
        axis.scatter(group, [rank] * len(group), color=f"C{rank % 10}", s=40)
    # The members are named in the row labels, where they cannot run off the plot.
    names = [", ".join(feature_label(f, input_shape) for f in g[:6]) + (" ..." if len(g) > 6 else "")
             for g in groups]
    axis.set_yticks(range(len(groups)), [f"group {i + 1}: {n}" for i, n in enumerate(names)], fontsize=8)
    axis.set_xlim(-0.5, feature_count(input_shape) - 0.5)
    axis.grid(axis="y", color="0.9")
    axis.invert_yaxis()
    axis.set_xlabel("input feature index")
    axis.set_title("features wired to exactly the same first-hidden-layer units")
