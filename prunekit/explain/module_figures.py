"""What crespr's modules do: their measures for summary.json and their three figures, registered for
method=crespr (its modules are rebuilt from the run's config and data as the method built them).

- ``modules_inputs.png`` (MLP on images): one picture per module, the input features of its cluster
  coloured by the surviving |w| that reaches the module from each (grey: features of other clusters);
- ``modules_classes.png``: each module's share of each class's input, the summed |path weight| reaching
  the class through the module's units of the last hidden layer (a CNN: through the classifier alone);
- ``modules_weights.png``: every layer's |w| with rows and columns ordered by module and the module
  boundaries drawn, so the block structure, and any weight crossing it, shows.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import nn

from prunekit.explain.features import is_image, normalise_shape, to_grid
from prunekit.explain.figures import PATH_WEIGHT_CMAP, path_weight_norm, save_figure
from prunekit.explain.graph import surviving_network
from prunekit.explain.modularity import partition_modularity
from prunekit.explain.registry import FinishedRun, register_figure, register_measure
from prunekit.layers import is_mlp, prunable_layers
from prunekit.pruning.clusters import feature_clusters
from prunekit.pruning.modules import inside_fraction, unit_modules, weight_modules


def _matrices(model: nn.Module) -> list[np.ndarray]:
    """Every prunable layer's |w| as an (out x in) matrix; a convolution's summed over its kernel."""
    return [layer.weight.detach().abs().flatten(2).sum(2).cpu().double().numpy() if layer.weight.dim() > 2
            else layer.weight.detach().abs().cpu().double().numpy() for _, layer in prunable_layers(model)]


def class_contributions(model: nn.Module, k: int) -> np.ndarray:
    """K x classes: the |path weight| reaching each class through each module's units of the last hidden
    layer, as a share of all that reaches the class (columns sum to 1, or 0 for a class nothing reaches)."""
    matrices = _matrices(model)
    classifier = matrices[-1]
    # The |path weight| arriving at each classifier input: from every input feature of an MLP; a CNN's
    # convolutions mix positions, so there only the classifier's own weights count.
    mass = np.ones(classifier.shape[1])
    if is_mlp(model):
        mass = np.ones(matrices[0].shape[1])
        for matrix in matrices[:-1]:
            mass = matrix @ mass
    hidden = unit_modules(matrices[-2].shape[0], k).numpy()
    modules = np.repeat(hidden, classifier.shape[1] // len(hidden))
    flow = classifier * mass[None, :]
    contributions = np.stack([flow[:, modules == c].sum(1) for c in range(k)])
    totals = contributions.sum(0, keepdims=True)
    return np.divide(contributions, totals, out=np.zeros_like(contributions), where=totals > 0)


def module_entries(model: nn.Module, input_shape: tuple[int, ...], modules: dict[str, torch.Tensor],
                   features: torch.Tensor | None, k: int) -> dict:
    """summary.json entries: ``inside_fraction`` (of the surviving weights between modular layers, the share
    joining a module to itself) and, for an MLP, ``module_q``: Newman's Q of the modules as the partition of
    the surviving network (a class belongs to the module bringing it the most |path weight|) and
    ``module_features``, the input features of each cluster."""
    layers = dict(prunable_layers(model))
    entries = {"inside_fraction": inside_fraction(layers, modules, features is None)}
    if features is not None:
        net = surviving_network(model, math.prod(input_shape))
        labels = [features.numpy(), *[unit_modules(w.shape[0], k).numpy() for w in net.weights[:-1]],
                  class_contributions(model, k).argmax(0)]
        entries.update(module_q=partition_modularity(net, labels), module_features=np.bincount(
            features.numpy(), minlength=k).tolist())
    return entries


def _plot_inputs(first: np.ndarray, features: np.ndarray, k: int, shape: tuple[int, ...], path: pathlib.Path) -> None:
    hidden = unit_modules(first.shape[0], k).numpy()
    cols = min(k, 8)
    fig = Figure(figsize=(1.7 * cols, 1.9 * math.ceil(k / cols)), layout="constrained")
    for c in range(k):
        ax = fig.add_subplot(math.ceil(k / cols), cols, c + 1)
        mass = first[hidden == c].sum(0) * (features == c)
        grid = to_grid(mass, shape)
        member = to_grid((features == c).astype(float), shape) > 0
        ax.imshow(np.where(member, np.nan, 1.0), cmap="Greys", vmin=0, vmax=4)
        ax.imshow(np.where(member, grid, np.nan), cmap=PATH_WEIGHT_CMAP, norm=path_weight_norm(grid))
        ax.set_title(f"module {c}: {int((features == c).sum())} in, {int((mass > 0).sum())} used", fontsize=7)
        ax.set_axis_off()
    fig.suptitle("input features of each module (colour: surviving |w| into the module)", fontsize=9)
    save_figure(fig, path)


def _plot_classes(contributions: np.ndarray, path: pathlib.Path) -> None:
    fig = Figure(figsize=(max(4.0, 0.45 * contributions.shape[1] + 2), max(2.5, 0.35 * len(contributions) + 1.5)),
                 layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(contributions, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xlabel("class")
    ax.set_ylabel("module")
    ax.set_xticks(range(contributions.shape[1]))
    ax.set_yticks(range(len(contributions)))
    ax.set_title("each module's share of the |path weight| reaching each class", fontsize=9)
    fig.colorbar(image, ax=ax)
    save_figure(fig, path)


def _plot_weights(matrices: list[np.ndarray], names: list[str], features: np.ndarray | None, k: int,
                  path: pathlib.Path) -> None:
    cols = min(len(matrices), 4)
    fig = Figure(figsize=(3.2 * cols, 3.0 * math.ceil(len(matrices) / cols)), layout="constrained")
    positive = np.concatenate([m[m > 0] for m in matrices])
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    for index, (matrix, name) in enumerate(zip(matrices, names)):
        ax = fig.add_subplot(math.ceil(len(matrices) / cols), cols, index + 1)
        if index == 0 and features is not None:  # an MLP's input features, grouped by cluster
            matrix = matrix[:, np.argsort(features, kind="stable")]
            col_bounds = np.cumsum(np.bincount(features, minlength=k))[:-1]
        elif index == 0:  # a CNN's first convolution reads every image channel
            col_bounds = []
        else:
            width = matrices[index - 1].shape[0]
            col_bounds = np.flatnonzero(np.diff(unit_modules(width, k).numpy())) + 1
            col_bounds = col_bounds * (matrix.shape[1] // width)
        row_bounds = np.flatnonzero(np.diff(unit_modules(len(matrix), k).numpy())) + 1
        if index == len(matrices) - 1:  # the classes
            row_bounds = []
        ax.imshow(np.where(matrix > 0, matrix, np.nan), cmap="Blues", norm=norm, aspect="auto", interpolation="nearest")
        for bound in col_bounds:
            ax.axvline(bound - 0.5, color="#d62728", lw=0.6)
        for bound in row_bounds:
            ax.axhline(bound - 0.5, color="#d62728", lw=0.6)
        ax.set_title(f"{name} ({int((matrix > 0).sum())} weights)", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle("|w| per layer, rows and columns ordered by module (red: module boundaries)", fontsize=9)
    save_figure(fig, path)


def plot_modules(model: nn.Module, input_shape: tuple[int, ...], modules: dict[str, torch.Tensor],
                 features: torch.Tensor | None, k: int, out_dir: pathlib.Path) -> None:
    """Write modules_classes.png, modules_weights.png and, for an MLP on images, modules_inputs.png."""
    matrices = _matrices(model)
    names = [name for name, _ in prunable_layers(model)]
    shape = normalise_shape(input_shape) if len(input_shape) <= 3 else tuple(input_shape)
    clusters = features.numpy() if features is not None else None
    if clusters is not None and is_image(shape):
        _plot_inputs(matrices[0], clusters, k, shape, out_dir / "modules_inputs.png")
    _plot_classes(class_contributions(model, k), out_dir / "modules_classes.png")
    _plot_weights(matrices, names, clusters, k, out_dir / "modules_weights.png")


def run_modules(run: FinishedRun) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The module of every weight of the run's final network, and an MLP's input clusters (None for a CNN, whose
    first convolution reads every channel), drawn from the training inputs with the run's seed as crespr drew them."""

    def compute():
        method, layers = run.cfg.method, dict(prunable_layers(run.model))
        features = None
        if isinstance(next(iter(layers.values())), nn.Linear):
            dataset = run.dataset
            features = feature_clusters(method.cluster_by, method.clusters, dataset.train.x, dataset.input_shape,
                                        run.cfg.seed)
        return weight_modules(layers, method.clusters, features), features

    return run.once("crespr_modules", compute)


@register_measure("modules", methods=("crespr",),
                  description="inside_fraction, and for an MLP module_q and module_features, of crespr's modules")
def measure_modules(run: FinishedRun) -> dict:
    """:func:`module_entries` of the run's modules."""
    modules, features = run_modules(run)
    return module_entries(run.model, run.input_shape, modules, features, run.cfg.method.clusters)


@register_figure("modules", methods=("crespr",),
                 description="crespr's modules: their input features, their share of each class, the weights by module")
def draw_modules(run: FinishedRun, out_dir: pathlib.Path) -> dict:
    """:func:`plot_modules` of the run's modules."""
    modules, features = run_modules(run)
    plot_modules(run.model, run.input_shape, modules, features, run.cfg.method.clusters, out_dir)
    return {}
