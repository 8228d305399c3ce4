"""Post-training pruning from a few calibration samples (Wanda, SparseGPT): what the two methods share.

Both papers prune a trained network layer by layer in forward order, each layer reading its inputs on the
calibration samples as they come out of the layers already pruned (their code walks the blocks of a transformer
and feeds each block the previous pruned block's outputs). Here the walk runs the whole network on the
calibration samples once per prunable layer, with a hook on that layer, so it holds for any graph (residual
connections included). A layer is a matrix over its inputs: a Linear layer's features, a convolution's unfolded
patches (``F.unfold`` by its kernel, stride, padding and dilation), whose (channel, kernel row, kernel column)
order is that of ``weight.flatten(1)``. A method sums a statistic of the input columns (:meth:`accumulate`) and
decides the layer from it (:meth:`prune_layer`); nothing is trained.

How much each layer keeps: ``method.scope=layer`` (the papers' setting) the same fraction of every layer;
``scope=global`` the counts that one global magnitude ranking of the same network would keep at that sparsity,
so that the methods can be compared with global magnitude at equal per-layer allocation; ``method.pattern=N:M``
N of every M consecutive weights of a row instead.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from prunekit import rng
from prunekit.config import MethodConfig, one_of, ranged
from prunekit.distributed import world
from prunekit.errors import UserError
from prunekit.layers import eval_mode
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.patterns import Pattern, pattern_of
from prunekit.pruning.selection import resolved_scope, select_groups

_CALIBRATION_STREAM = 8_111  # keeps the draw of calibration samples apart from other seeded streams of the run
_BATCH = 128  # calibration samples per forward pass (bounds the memory of a convolution's unfolded inputs)


@dataclass
class CalibrationConfig(MethodConfig):
    """What Wanda and SparseGPT share: the calibration budget and the papers' per-layer allocation."""

    # Training samples the layers' inputs are read on, drawn with the run's seed: both papers calibrate on 128
    # sequences (Sun et al. 2023 Sec. 4; Frantar & Alistarh 2023 Sec. 5).
    calibration_samples: int = ranged(128, 1)
    # layer: every layer prunes the same fraction (both papers); global: the per-layer fractions of a global
    # magnitude ranking at the same sparsity; auto: global, as for every weight-granularity method
    scope: str = one_of("layer", "auto", "global", "layer")


def check_convolutions(masks: MaskSet) -> None:
    """Refuse (one line) a convolution that is not one matrix over its unfolded inputs."""
    for name, layer in masks.layers.items():
        if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or isinstance(layer.padding, str)
                                             or layer.padding_mode != "zeros"):
            raise UserError(f"layer {name} is a grouped or non-zero-padded convolution (groups={layer.groups}, "
                            f"padding={layer.padding!r}, padding_mode={layer.padding_mode}); post-training "
                            "methods read a convolution as one matrix over its zero-padded unfolded inputs")


def input_columns(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The inputs of ``layer`` as rows of the matrix its weights multiply: [positions, weight[0].numel()]."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(inputs, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                           stride=layer.stride)  # [batch, in_channels * kh * kw, positions]
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return inputs.reshape(-1, inputs.shape[-1])


def calibration_index(train_size: int, samples: int, seed: int) -> torch.Tensor:
    """``samples`` positions of the training split drawn with ``seed`` (sorted); more than it holds is one line."""
    if samples > train_size:
        raise UserError(f"method.calibration_samples={samples} but the training split holds {train_size} samples; "
                        f"choose at most {train_size}")
    generator = torch.Generator().manual_seed(rng.derive(seed, _CALIBRATION_STREAM))
    return torch.randperm(train_size, generator=generator)[:samples].sort().values


class CalibratedPruning(PruningMethod):
    """One-shot pruning of a trained network layer by layer on calibration samples; subclasses say what they
    sum over a layer's input columns and how they decide the layer from it."""

    granularities = ("weight",)
    allocates = False  # per-layer counts come from method.scope or method.pattern, not method.layer_sparsity

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        return {**super().unused_options(cfg),
                "normalize": f"method={cls.name} compares weights within a layer (scope=global borrows the counts of "
                             "an unnormalised global magnitude ranking)"}

    @classmethod
    def check_network(cls, cfg: DictConfig, masks: MaskSet) -> None:
        check_convolutions(masks)
        super().check_network(cfg, masks)

    def accumulate(self, columns: torch.Tensor) -> torch.Tensor:
        """The statistic of one batch of input columns ([positions, inputs]) that is summed over the samples."""
        raise NotImplementedError

    def prune_layer(self, layer: nn.Module, alive: torch.Tensor, total: torch.Tensor, positions: int,
                    keep: int | None, pattern: Pattern | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The new weights (shaped ``weight.flatten(1)``) and keep mask of one layer, from the summed statistic
        ``total`` over ``positions`` input columns: ``keep`` weights in all, or ``pattern`` N of every M."""
        raise NotImplementedError

    def prune(self, level: float) -> None:
        """Prune every layer, in forward order, to ``level`` (or to ``method.pattern``) from its inputs on the
        calibration samples as the layers before it, already pruned, pass them on."""
        pattern = pattern_of(self.cfg)
        counts = None if pattern is not None else self.keep_counts(level)
        for name, total, positions in self.walk():
            layer = self.masks.layers[name]
            weight, keep = self.prune_layer(layer, layer.weight_mask.flatten(1), total, positions,
                                            None if counts is None else counts[name], pattern)
            with torch.no_grad():
                layer.weight.copy_(weight.view_as(layer.weight).to(layer.weight.dtype))
            self.masks.set_groups("weight", {name: keep.view_as(layer.weight_mask)})

    def keep_counts(self, level: float) -> dict[str, int]:
        """Weights each layer keeps at ``level``: the same fraction of every layer (scope=layer) or what a global
        magnitude ranking keeps of each (scope=global), each layer keeping its ``min_keep`` floor."""
        alive = self.masks.groups_alive("weight")
        magnitude = {name: self.masks.layers[name].weight.detach().abs() for name in alive}
        keep = select_groups(magnitude, alive, level, resolved_scope(self.cfg.scope, "weight"), self.cfg.min_keep)
        return {name: int(kept.sum()) for name, kept in keep.items()}

    def walk(self) -> Iterator[tuple[str, torch.Tensor, int]]:
        """Per prunable layer in forward order: its name, the statistic summed over its input columns on the
        calibration samples, and how many columns there were. The network runs again for every layer, after the
        caller has pruned the ones before it."""
        train_size = len(self.data.dataset.train.y)
        # Each rank runs its share of the samples; the sums are added over the ranks (the same as one process's).
        index = world.own_positions(calibration_index(train_size, self.cfg.calibration_samples, self.seed))
        for name in self.masks.names:
            layer = self.masks.layers[name]
            sums: dict[str, torch.Tensor | int] = {"total": 0, "positions": 0}

            def read(module: nn.Module, args: tuple) -> None:
                columns = input_columns(module, args[0].detach()).float()
                sums["total"] = sums["total"] + self.accumulate(columns)
                sums["positions"] += columns.shape[0]

            handle = layer.register_forward_pre_hook(read)
            try:
                with torch.no_grad(), eval_mode(self.model):
                    for inputs, _ in self.data.samples("train", index, _BATCH):
                        self.model(inputs)
            finally:
                handle.remove()
            total, positions = world.sum_([torch.as_tensor(sums["total"], dtype=torch.float32),
                                           torch.tensor(sums["positions"])])
            yield name, total, int(positions)
