"""First-order criteria on unit outputs, the LRP paper's rivals: taylor and gradient (Molchanov et al. 2017)."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.layers import eval_mode
from prunekit.pruning.criteria import register_criterion
from prunekit.pruning.criteria.context import ScoringContext
from prunekit.pruning.units import unit_outputs

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (activation, dL/dactivation) -> per-entry term


@register_criterion("taylor", granularities=("unit",), reads_samples=True)
def taylor(context: ScoringContext) -> dict[str, torch.Tensor]:
    """|sum of a * dL/da| per unit over reference samples and positions / (N*H*W)."""
    return first_order(context.model, context.reference_batches(), unit_outputs(context.model),
                       lambda activation, grad: activation * grad)


@register_criterion("gradient", granularities=("unit",), reads_samples=True)
def gradient(context: ScoringContext) -> dict[str, torch.Tensor]:
    """|sum of dL/da| per unit over reference samples and positions / (N*H*W)."""
    return first_order(context.model, context.reference_batches(), unit_outputs(context.model),
                       lambda activation, grad: grad)


def first_order(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                outputs: dict[str, nn.Module], term: Term) -> dict[str, torch.Tensor]:
    """``|sum over samples and positions of term(a, dL/da)| / (N * H * W)`` per unit, where ``a`` is the
    unit's output and ``L`` the cross-entropy on the true labels summed over samples (so ``dL/da`` is each
    sample's own gradient). Taylor uses ``a * dL/da``, gradient ``dL/da``."""
    sums: dict[str, torch.Tensor] = {}
    positions: dict[str, int] = {}
    count = 0
    with eval_mode(model):
        for x, y in batches:
            captured: dict[str, torch.Tensor] = {}
            handles = [module.register_forward_hook(_capture(captured, name)) for name, module in outputs.items()]
            try:
                logits = model(x)
            finally:
                for handle in handles:
                    handle.remove()
            # Gradients with respect to the captured outputs only: the parameters' .grad stay untouched.
            grads = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), list(captured.values()))
            for (name, activation), grad in zip(captured.items(), grads):
                dims = [d for d in range(activation.dim()) if d != 1]
                total = term(activation.detach(), grad).sum(dims)
                sums[name] = sums[name] + total if name in sums else total
                positions[name] = activation[0, 0].numel()
            count += len(y)
    return {name: total.abs() / (count * positions[name]) for name, total in sums.items()}


def _capture(store: dict[str, torch.Tensor], name: str):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        store[name] = output
        # The next layer gets a copy: an in-place ReLU after a BatchNorm would otherwise overwrite the
        # captured activation and cut the gradient we ask for.
        return output.clone()

    return hook
