"""relevance_maps.png: input relevance (LRP) of a few reference samples, beside the samples themselves."""
from __future__ import annotations

import pathlib

import numpy as np
import torch
from matplotlib.figure import Figure

from prunekit import rng
from prunekit.explain.figures import save_figure
from prunekit.explain.registry import FinishedRun, register_figure
from prunekit.pruning.reference import reference_index

HEATMAP_SAMPLES = 8  # reference samples drawn as input-relevance heat maps


def _as_images(values: torch.Tensor, input_shape: tuple[int, ...]) -> np.ndarray:
    """N x H x W arrays summed over channels; a tabular sample becomes one row of features."""
    values = values.detach().float().cpu().reshape(len(values), *input_shape)
    if len(input_shape) == 3:
        return values.sum(1).numpy()
    return values.reshape(len(values), 1, -1).numpy()


def plot_relevance_maps(x: torch.Tensor, relevance: torch.Tensor, labels: torch.Tensor,
                        input_shape: tuple[int, ...], path: pathlib.Path) -> None:
    """One column per sample: the (normalised) input on top, its relevance below in a symmetric red-blue
    scale (red: evidence for the true class, blue: against it)."""
    images, maps = _as_images(x, input_shape), _as_images(relevance, input_shape)
    count = len(images)
    fig = Figure(figsize=(1.6 * count, 3.4), layout="constrained")
    axes = fig.subplots(2, count, squeeze=False)
    for column in range(count):
        bound = max(float(np.abs(maps[column]).max()), 1e-12)
        axes[0, column].imshow(images[column], cmap="gray")
        axes[0, column].set_title(f"class {int(labels[column])}", fontsize=8)
        axes[1, column].imshow(maps[column], cmap="bwr", vmin=-bound, vmax=bound)
        for row in range(2):
            axes[row, column].set_axis_off()
    fig.suptitle("input relevance of reference samples (LRP, true class)", fontsize=9)
    save_figure(fig, path)


@register_figure("relevance_maps", methods=("lrp",),
                 description="input relevance (LRP) of a few of the reference samples the lrp scores were read on")
def draw_relevance_maps(run: FinishedRun, out_dir: pathlib.Path) -> dict:
    """relevance_maps.png: ``HEATMAP_SAMPLES`` of the run's reference samples (drawn with its seed) and their input
    relevance through the final network, with the run's composite."""
    from prunekit.pruning.relevance import input_relevance  # zennit is imported only by runs that use it

    dataset, seed = run.dataset, run.cfg.seed
    reference = reference_index(dataset.train.y, run.cfg.method.samples_per_class, seed)
    generator = torch.Generator().manual_seed(rng.fold(seed))
    index = reference[torch.randperm(len(reference), generator=generator)[:HEATMAP_SAMPLES]].sort().values
    x, y = dataset.samples("train", index)
    x = dataset.normalise(x)
    relevance = input_relevance(run.model, x.view(len(x), *run.input_shape), y, run.cfg.method.composite)
    plot_relevance_maps(x, relevance, y, run.input_shape, out_dir / "relevance_maps.png")
    return {}
