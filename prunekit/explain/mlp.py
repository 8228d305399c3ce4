"""The interpretability figures of a pruned MLP, whatever method pruned it (DESIGN.md 2.2).

:func:`explain_mlp` reads the surviving network (the non-zero weights on some input-to-class path)
and writes feature importance, feature symmetry and the pathways from features to classes. Figures
are drawn on bare matplotlib ``Figure`` objects, never through pyplot, so no display or global backend
state is involved and nothing leaks between calls.
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

from torch import nn

from prunekit.errors import UserError
from prunekit.explain.features import feature_count, is_image, normalise_shape, to_grid
from prunekit.explain.graph import surviving_network
from prunekit.explain.importance import feature_importance, plot_importance, write_importance_csv
from prunekit.explain.pathways import plot_pathways
from prunekit.explain.registry import FinishedRun, register_figure
from prunekit.explain.symmetry import interchangeable_groups, mirror_score, plot_symmetry


def explain_mlp(model: nn.Module, input_shape: Sequence[int], out_dir: pathlib.Path,
                class_names: Sequence[str] | None = None) -> dict:
    """Write importance.png, importance.csv, symmetry.png and pathways.png into ``out_dir``.

    ``model`` is an MLP whose Linear layers, in ``named_modules()`` order, form a chain from the
    flattened input (``prod(input_shape)`` features) to the classes; pruned weights are exactly 0.
    ``input_shape`` is ``(C, H, W)`` for images (``(H, W)`` is read as one channel) or ``(F,)`` for
    tabular data. ``class_names`` label the outputs (their indices if None).

    Every file is written atomically, ``out_dir`` is created if missing. Returns, for summary.json::

        {"inputs_used": int,             # input features with an alive path to a class
         "alive_units": [int, ...],      # per layer: input features, hidden layers, classes
         "symmetry": {"left_right": float | None, "up_down": float | None,
                      "groups": [[feature, ...], ...]}}

    Symmetry scores and groups are defined in :mod:`prunekit.explain.symmetry`; scores are None for
    tabular input or when nothing survives.
    """
    shape = normalise_shape(input_shape)
    out_dir = pathlib.Path(out_dir)
    net = surviving_network(model, feature_count(shape))
    n_classes = net.alive[-1].size
    names = [str(i) for i in range(n_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n_classes:
        raise UserError(f"{len(names)} class names given, but the model has {n_classes} outputs")

    importance = feature_importance(net)
    write_importance_csv(importance, shape, out_dir / "importance.csv")
    plot_importance(importance, shape, out_dir / "importance.png")

    scores: dict[str, float | None] = {"left_right": None, "up_down": None}
    if is_image(shape):
        grid = to_grid(importance.path_weight, shape)
        scores = {"left_right": mirror_score(grid, axis=1), "up_down": mirror_score(grid, axis=0)}
    groups = interchangeable_groups(net)
    plot_symmetry(importance.path_weight, importance.connections, groups, scores, shape,
                  out_dir / "symmetry.png")

    plot_pathways(net, shape, names, out_dir / "pathways.png")
    return {"inputs_used": importance.inputs_used, "alive_units": net.alive_counts,
            "symmetry": {**scores, "groups": groups}}


@register_figure("interpretability", applies=lambda run: run.is_mlp,
                 description="an MLP's feature importance, symmetry and pathways from features to classes")
def draw_interpretability(run: FinishedRun, out_dir: pathlib.Path) -> dict:
    """importance.png, importance.csv, symmetry.png and pathways.png of any pruned MLP (see :func:`explain_mlp`)."""
    return explain_mlp(run.model, run.input_shape, out_dir)
