"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

Each layer is pruned so that its outputs on the calibration samples change least: with the layer's Hessian
``H = 2/n X X^T`` of its n input columns, the columns are visited left to right, a pruned weight's error is
spread over the row's not yet visited weights by the optimal-brain-surgeon update (the rows of the upper
Cholesky factor of ``H^-1`` give every step's update at once), and the mask is chosen adaptively: for every block
of ``block_size`` columns, at the block's start, the weights of lowest ``w^2 / [H^-1]_jj^2`` of the whole block
(or, with ``method.pattern=N:M``, inside the loop, the N best of every M). This is the authors' ``fasterprune``
(github:IST-DASLab/sparsegpt, sparsegpt.py) without quantisation: dead inputs (a zero diagonal) zeroed, the
Hessian dampened by ``dampening`` times its mean diagonal, lazy block updates. The layers are pruned in forward
order, each reading its inputs from the layers already pruned (prunekit/pruning/calibration.py).
Where the authors prune ``int(n * sparsity) + 1`` weights of a block (``tmp <= thresh``), we prune the block's
share of the layer's count exactly, so the layer keeps what its allocation says; scripts/check_sparsegpt.py
compares the two on one layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.config import ranged
from prunekit.errors import UserError
from prunekit.pruning.calibration import CalibratedPruning, CalibrationConfig
from prunekit.pruning.methods import register_method
from prunekit.pruning.patterns import Pattern, n_of_m, pattern_of


@dataclass
class SparseGPTConfig(CalibrationConfig):
    """method=sparsegpt: layer-wise reconstruction with the inverse Hessian of the layer's inputs."""

    block_size: int = ranged(128, 1)  # columns per lazy-update block and per adaptive mask (the paper's B_s = 128)
    dampening: float = ranged(0.01, 0)  # added to H's diagonal, times its mean (the authors' percdamp=.01)


def inverse_hessian_factor(hessian: torch.Tensor, dampening: float) -> torch.Tensor:
    """The upper Cholesky factor of the dampened ``H^-1`` (``H`` with dead inputs already set to 1)."""
    damped = hessian.clone()
    damped.diagonal().add_(dampening * torch.diag(hessian).mean())  # as the authors sum it
    try:
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(damped))
        return torch.linalg.cholesky(inverse, upper=True)
    except torch.linalg.LinAlgError as err:
        raise UserError(f"method.dampening={dampening:g} leaves a layer's Hessian singular on the calibration "
                        "samples; raise method.dampening (the paper's 0.01) or method.calibration_samples") from err


def sparsegpt(weight: torch.Tensor, hessian: torch.Tensor, alive: torch.Tensor, keep: int | None,
              pattern: Pattern | None, block_size: int, dampening: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` [rows, columns] with the Hessian [columns, columns] of its inputs to ``keep`` weights in
    all (or to ``pattern``), already pruned weights (``~alive``) staying pruned; returns the reconstructed weights
    and the keep mask. Follows the authors' ``SparseGPT.fasterprune`` step for step."""
    weight, hessian = weight.clone(), hessian.clone()
    dead = hessian.diagonal() == 0  # inputs that are always zero: their weights read nothing
    hessian[dead, dead] = 1
    weight[:, dead] = 0
    factor = inverse_hessian_factor(hessian, dampening)
    rows, columns = weight.shape
    to_prune = alive.numel() - keep if keep is not None else 0
    pruned = torch.zeros_like(alive)
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        block, block_factor, block_alive = weight[:, i1:i2].clone(), factor[i1:i2, i1:i2], alive[:, i1:i2]
        diagonal = block_factor.diagonal()
        reconstructed, errors = torch.zeros_like(block), torch.zeros_like(block)
        mask = torch.zeros_like(block_alive)
        if pattern is None:  # the block's share of the layer's count, by w^2 / [H^-1]_jj^2 over the whole block
            count = round(to_prune * i2 / columns) - round(to_prune * i1 / columns)
            saliency = (block.pow(2) / diagonal.pow(2)).masked_fill(~block_alive, -torch.inf)
            mask.view(-1)[saliency.flatten().topk(count, largest=False).indices] = True
            mask |= ~block_alive
        for i in range(i2 - i1):
            if pattern is not None and i % pattern.m == 0:  # N:M: chosen on the weights as updated so far
                group = slice(i, i + pattern.m)
                saliency = block[:, group].pow(2) / diagonal[group].pow(2)
                mask[:, group] = ~n_of_m(saliency, block_alive[:, group], pattern)
            column = block[:, i]
            kept = column.masked_fill(mask[:, i], 0)
            error = (column - kept) / diagonal[i]
            block[:, i:] -= error.unsqueeze(1) @ block_factor[i, i:].unsqueeze(0)  # the OBS update of the rest
            reconstructed[:, i], errors[:, i] = kept, error
        weight[:, i1:i2] = reconstructed
        weight[:, i2:] -= errors @ factor[i1:i2, i2:]  # the block's updates of the later columns, at once
        pruned[:, i1:i2] = mask
    return weight, ~pruned


@register_method("sparsegpt", config=SparseGPTConfig)
class SparseGPT(CalibratedPruning):
    """Post-training pruning by layer-wise OBS reconstruction (Frantar & Alistarh 2023)."""

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        super().validate(cfg)
        pattern = pattern_of(cfg.method)
        if pattern is not None and cfg.method.block_size % pattern.m:
            raise UserError(f"method.block_size={cfg.method.block_size} must be a multiple of the M of "
                            f"method.pattern={pattern} (N:M groups are chosen inside a block)")

    def accumulate(self, columns: torch.Tensor) -> torch.Tensor:
        return columns.T @ columns

    def prune_layer(self, layer: nn.Module, alive: torch.Tensor, total: torch.Tensor, positions: int,
                    keep: int | None, pattern: Pattern | None) -> tuple[torch.Tensor, torch.Tensor]:
        # H = 2/n X X^T as the authors accumulate it (its scale changes neither the mask nor the update)
        hessian = 2 * total / positions
        return sparsegpt(layer.weight.detach().flatten(1).float(), hessian, alive, keep, pattern,
                         self.cfg.block_size, self.cfg.dampening)
