"""Feature importance read off the surviving network: importance.csv and importance.png.

Two quantities per input feature:
- connections: how many alive weights leave it (into the first hidden layer);
- path weight: the sum, over every path from the feature to any class, of the product of |w| along
  the path, i.e. the feature's entry of ``|W_1|^T |W_2|^T ... |W_L|^T 1``.
"""
from __future__ import annotations

import csv
import io
import pathlib
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from prunekit.explain.features import feature_label, is_image, pixel_of, to_grid
from prunekit.explain.figures import PATH_WEIGHT_CMAP, path_weight_norm, save_figure
from prunekit.explain.graph import SurvivingNetwork
from prunekit.rundir import atomic_write_bytes

TOP_FEATURES = 30  # bars in the tabular chart; beyond that the labels stop being readable


@dataclass(frozen=True)
class FeatureImportance:
    """Per input feature: alive outgoing ``connections`` (int) and summed |weight| ``path_weight``."""

    connections: np.ndarray
    path_weight: np.ndarray

    @property
    def inputs_used(self) -> int:
        """Features with at least one alive path to a class."""
        return int(np.count_nonzero(self.connections))


def feature_importance(net: SurvivingNetwork) -> FeatureImportance:
    """Compute both importance quantities of every input feature of ``net``."""
    connections = np.count_nonzero(net.weights[0], axis=0)
    # Walking back from the classes, flow[u] = sum over paths from u to any class of prod |w|.
    flow = np.ones(net.weights[-1].shape[0])
    for weight in reversed(net.weights):
        flow = np.abs(weight).T @ flow
    return FeatureImportance(connections=connections, path_weight=flow)


def write_importance_csv(importance: FeatureImportance, input_shape: tuple[int, ...],
                         path: pathlib.Path) -> None:
    """Write one row per feature: feature, row, col (empty for tabular), connections, path_weight."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["feature", "row", "col", "connections", "path_weight"])
    for feature, (count, weight) in enumerate(zip(importance.connections, importance.path_weight)):
        row, col = pixel_of(feature, input_shape) or ("", "")
        writer.writerow([feature, row, col, int(count), repr(float(weight))])
    atomic_write_bytes(path, buffer.getvalue().encode())


def plot_importance(importance: FeatureImportance, input_shape: tuple[int, ...],
                    path: pathlib.Path) -> None:
    """Draw importance.png: two heat maps for image input, a ranked bar chart for tabular input."""
    fig = Figure(figsize=(11, 4.8) if is_image(input_shape) else (11, 7), layout="constrained")
    if is_image(input_shape):
        _draw_heat_maps(fig, importance, input_shape)
    else:
        _draw_ranking(fig, importance, input_shape)
    fig.suptitle(f"Feature importance in the surviving network: {importance.inputs_used} of "
                 f"{importance.connections.size} input features used")
    save_figure(fig, path)


def _draw_heat_maps(fig: Figure, importance: FeatureImportance, input_shape: tuple[int, ...]) -> None:
    left, right = fig.subplots(1, 2)
    connections = to_grid(importance.connections, input_shape)
    image = left.imshow(connections, cmap="viridis", interpolation="nearest", vmin=0)
    fig.colorbar(image, ax=left, shrink=0.85, label="alive outgoing connections")
    left.set_title("surviving connections per pixel")
    weights = to_grid(importance.path_weight, input_shape)
    image = right.imshow(weights, cmap=PATH_WEIGHT_CMAP, norm=path_weight_norm(weights),
                         interpolation="nearest")
    fig.colorbar(image, ax=right, shrink=0.85, label="sum over paths of prod |w| (sqrt scale)")
    right.set_title("summed |weight| of surviving paths")
    for axis in (left, right):
        axis.set_xlabel("column")
        axis.set_ylabel("row")


def _draw_ranking(fig: Figure, importance: FeatureImportance, input_shape: tuple[int, ...]) -> None:
    used = np.flatnonzero(importance.connections)
    # Rank by path weight, then connections; both panels share the rows so a feature reads across.
    ranked = used[np.lexsort((-importance.connections[used], -importance.path_weight[used]))]
    top = ranked[:TOP_FEATURES]
    left, right = fig.subplots(1, 2, sharey=True)
    if top.size == 0:
        left.text(0.5, 0.5, "no input feature reaches a class", ha="center", va="center")
    rows = np.arange(top.size)
    left.barh(rows, importance.path_weight[top], color="tab:purple")
    right.barh(rows, importance.connections[top], color="tab:green")
    left.set_yticks(rows, [feature_label(int(f), input_shape) for f in top])
    left.invert_yaxis()
    left.set_xlabel("summed |weight| of surviving paths")
    right.set_xlabel("alive outgoing connections")
    left.set_title(f"top {top.size} features by path weight")
    right.set_title("surviving connections")
