"""The prunable layers of a network: every ``nn.Linear`` and ``nn.Conv2d``, in ``named_modules()`` order.

The masks, compaction, metrics and figures all walk a network through :func:`prunable_layers`, so the
order (forward order; tests/test_model_contract.py checks every registered model) and the set are defined once.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` with its name, in ``named_modules()`` order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, PRUNABLE)]


def group_norms(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The L2 norm of every slice of ``weight`` along ``dim`` (dim 1: input groups, a column of a Linear layer or
    every weight reading one input channel of a convolution; dim 0: unit rows)."""
    return weight.transpose(0, dim).flatten(1).norm(dim=1)


def is_mlp(model: nn.Module) -> bool:
    """True when every prunable layer is Linear: a chain of dense matrices on flattened inputs."""
    return all(isinstance(layer, nn.Linear) for _, layer in prunable_layers(model))


def one_sample(model: nn.Module, input_shape: tuple[int, ...], value: float, dtype: torch.dtype) -> torch.Tensor:
    """A batch of one sample of ``input_shape`` filled with ``value``, on the model's device."""
    device = next(model.parameters()).device
    return torch.full((1, *input_shape), value, dtype=dtype, device=device)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, so BatchNorm statistics are not updated; then each module's own mode."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)
