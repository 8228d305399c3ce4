"""LRP relevance from zennit: at unit outputs (the lrp pruning score) and at the input (heat maps).

Relevance starts at the network's output as the one-hot of each sample's true class (value 1, not the
logit) and is propagated back with a zennit composite, BatchNorm merged into the preceding layer by a
canonizer. With zennit's rules in place the "gradient" that autograd carries between layers *is* the
relevance, so the relevance at a module's output is the gradient that reaches that output tensor. The rules
leave biases out (``zero_params``), so relevance is conserved from layer to layer and the scores of
different layers are comparable.

Nothing about the model changes: the canonizers modify parameters and buffers and then restore them (zennit
swaps the original tensors back, so the restoration is bit-exact; the tests check it), the rules work on
temporary copies of the parameters, and the backward pass asks for the input's gradient only, so no
parameter's ``.grad`` is touched.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.canonizers import Canonizer, SequentialMergeBatchNorm
from zennit.composites import EpsilonPlus
from zennit.core import Composite
from zennit.rules import ZPlus
from zennit.torchvision import ResNetCanonizer

from prunekit.config import choice
from prunekit.layers import eval_mode

Batch = tuple[torch.Tensor, torch.Tensor]
Receiver = Callable[[str, torch.Tensor], None]  # (module name, relevance at its output) -> None
NO_BIAS = ["bias"]  # a bias would absorb or inject relevance and break conservation


def _epsilon_plus(canonizers: list[Canonizer]) -> Composite:
    # z+ on convolutions, epsilon 1e-6 on Linear layers: the LRP pruning paper's rules
    return EpsilonPlus(epsilon=1e-6, zero_params=NO_BIAS, canonizers=canonizers)


def _zplus(canonizers: list[Canonizer]) -> Composite:
    # z+ on Linear layers too, as the authors' VGG code does; layer_map entries take precedence over EpsilonPlus's
    return EpsilonPlus(zero_params=NO_BIAS, layer_map=[(nn.Linear, ZPlus(zero_params=NO_BIAS))], canonizers=canonizers)


COMPOSITES: dict[str, Callable[[list[Canonizer]], Composite]] = {"epsilon_plus": _epsilon_plus, "zplus": _zplus}


def make_composite(model: nn.Module, name: str = "epsilon_plus") -> Composite:
    """The zennit composite ``name`` (a key of ``COMPOSITES``) with the canonizer that fits ``model``.

    torchvision's residual blocks need ``ResNetCanonizer``: besides merging BatchNorm it routes the residual
    addition through a zennit ``Sum`` module, so relevance splits between the two branches by their shares.
    """
    choice(name, list(COMPOSITES), "method.composite")
    residual = any(isinstance(module, (BasicBlock, Bottleneck)) for module in model.modules())
    return COMPOSITES[name]([ResNetCanonizer() if residual else SequentialMergeBatchNorm()])


@contextmanager
def _lrp_context(model: nn.Module, composite: str) -> Iterator[nn.Module]:
    """The model in eval mode (merging BatchNorm needs its running statistics) with the composite's rules and
    canonizer applied, once for all the batches that follow; everything is undone on exit."""
    with eval_mode(model), torch.enable_grad(), make_composite(model, composite).context(model) as modified:
        yield modified


@contextmanager
def _output_hooks(modules: dict[str, nn.Module], receive: Receiver) -> Iterator[None]:
    """Pass the relevance arriving at each module's output to ``receive`` during the next relevance passes.

    The hooks are registered after the composite, so they see the tensor each module finally returns (after
    zennit's own hooks), and the gradient reaching it is the relevance the next layer's rule sent back.
    A BatchNorm merged by the canonizer computes the identity (up to its eps) and gets zennit's pass rule,
    so the relevance at its output is the relevance at the output of the layer it was merged into. That
    holds in ResNet's canonized blocks too: there the second BatchNorm's output feeds the residual ``Sum``.
    """
    def hook_for(name: str):
        def forward_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            output.register_hook(lambda grad: receive(name, grad.detach()))

        return forward_hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _propagate(modified: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One forward and relevance pass through the composite-modified model; returns the input relevance."""
    x = x.detach().requires_grad_(True)
    logits = modified(x)
    one_hot = torch.zeros_like(logits).scatter_(1, y.view(-1, 1).to(logits.device), 1.0)
    # the input's gradient only: autograd then computes no parameter gradient, and .grad stays as it was
    (relevance,) = torch.autograd.grad(logits, x, grad_outputs=one_hot)
    return relevance


def relevance_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, modules: dict[str, nn.Module],
                 composite: str = "epsilon_plus") -> dict[str, torch.Tensor]:
    """The signed relevance at the output of each of ``modules`` (name -> module of ``model``), shaped like
    that output, for the batch ``x`` with true labels ``y``. Each module must run once per forward pass."""
    caught: dict[str, torch.Tensor] = {}

    def receive(name: str, relevance: torch.Tensor) -> None:
        if name in caught:
            raise ValueError(f"module {name!r} ran more than once in one forward pass: its relevance is ambiguous")
        caught[name] = relevance

    with _lrp_context(model, composite) as modified, _output_hooks(modules, receive):
        _propagate(modified, x, y)
    # the hooks fire in backward order; give the modules' own order back
    return {name: caught[name] for name in modules if name in caught}


def unit_relevance(model: nn.Module, batches: Iterable[Batch], modules: dict[str, nn.Module],
                   composite: str = "epsilon_plus") -> dict[str, torch.Tensor]:
    """The lrp pruning score of every unit: per module of ``modules``, |relevance| at its output summed over
    all samples of ``batches`` (pairs of inputs and true labels) and all positions, one value per channel or
    feature (dim 1 of the output). The composite and its canonizer are applied once for all batches."""
    scores: dict[str, torch.Tensor] = {}

    def receive(name: str, relevance: torch.Tensor) -> None:
        per_unit = relevance.abs().sum([d for d in range(relevance.dim()) if d != 1])
        scores[name] = scores[name] + per_unit if name in scores else per_unit

    with _lrp_context(model, composite) as modified, _output_hooks(modules, receive):
        for x, y in batches:
            _propagate(modified, x, y)
    return {name: scores[name] for name in modules if name in scores}


def input_relevance(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    composite: str = "epsilon_plus") -> torch.Tensor:
    """The signed relevance of every input entry for its sample's true class, shaped like ``x`` (heat maps)."""
    with _lrp_context(model, composite) as modified:
        return _propagate(modified, x, y).detach()
