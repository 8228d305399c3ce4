"""SynFlow, iterative synaptic flow pruning (Tanaka et al. 2020): data-free pruning at initialisation that
keeps the weights carrying the most "flow" through the network, re-scored over many rounds so that no layer
collapses.

As the authors' code does it (github.com/ganguli-lab/Synaptic-Flow, Pruners/pruners.py SynFlow and
prune.py prune_loop): the network is linearised (every parameter and buffer replaced by its absolute value,
BatchNorm in eval mode), an all-ones input of the data's shape goes through it, R is the sum of the output, and
a weight scores ``|w * dR/dw|``. Round k of n prunes to the density ``d^(k/n)`` (their exponential schedule;
here from the level of the previous pruning step, so any schedule of prunekit can drive it), and
every round re-scores the network its masks leave. Each round selects through the run's allocation
(``method.scope``, ``method.min_keep``; global by default, as in the paper). The linearised copy is computed in
float64: path sums of deep networks overflow float32 (their code has the float64 lines commented out; the
ranking is the same wherever float32 does not overflow). The signs they restore afterwards are never lost
here: the model's own tensors are not touched.

With ``method.pattern`` (N:M) every layer keeps N of every M weights whatever the scores say, so no layer can
collapse and one round is all the pattern leaves to decide.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from prunekit.config import MethodConfig, ranged
from prunekit.layers import one_sample
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import register_method


@dataclass
class SynFlowConfig(MethodConfig):
    """method=synflow: data-free, iterative."""

    rounds: int = ranged(100, 1)  # scoring and pruning rounds per pruning step (Tanaka et al. 2020: 100)


@register_method("synflow", config=SynFlowConfig)
class SynFlow(PruningMethod):
    """Rounds of synaptic-flow scores, each selected by the allocation at an exponentially rising sparsity."""

    granularities = ("weight",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.level = 0.0  # the level the masks were last pruned to

    def scores(self) -> dict[str, torch.Tensor]:
        """``|w * dR/dw|`` on the current masks, divided by the largest score (float32 holds the ranking)."""
        flow = synaptic_flow(self.model, self.masks, tuple(self.data.input_shape))
        scale = max(float(score.max()) for score in flow.values())
        if not 0 < scale < float("inf"):
            raise ArithmeticError(f"synaptic flow is {scale} (float64); no path through the network, or overflow")
        return {name: (score / scale).to(self.masks.layers[name].weight.dtype) for name, score in flow.items()}

    def prune(self, level: float) -> None:
        """``method.rounds`` rounds from the current level to ``level``: round k keeps ``(kept now) *
        (kept at level / kept now)^(k/n)``, re-scored each time."""
        if level <= self.level:
            return
        rounds = 1 if self.allocation.pattern is not None else self.cfg.rounds
        kept_now, kept_then = 1 - self.level, 1 - level
        for k in range(1, rounds + 1):
            step = level if k == rounds else 1 - kept_now * (kept_then / kept_now) ** (k / rounds)
            self.allocation.prune("weight", self.scores(), step)
        self.level = level

    def state_dict(self) -> dict:
        return {"level": self.level}

    def load_state_dict(self, state: dict) -> None:
        self.level = state["level"]


def synaptic_flow(model: nn.Module, masks: MaskSet, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """``|w| * dR/d|w|`` per prunable weight in float64, R the summed output of the linearised network (a copy:
    every floating parameter and buffer by its absolute value, pruned weights zero, eval mode) on one all-ones
    sample of ``input_shape``. The model's own tensors and their ``.grad`` are left untouched."""
    linear = copy.deepcopy(model).double().eval().requires_grad_(False)
    with torch.no_grad():
        for tensor in [*linear.parameters(), *linear.buffers()]:
            if tensor.is_floating_point():
                tensor.abs_()
        for name in masks.layers:  # pruned weights are zero already; the masks say so whatever the weights hold
            layer = linear.get_submodule(name)
            layer.weight.mul_(layer.weight_mask)
    weights = {name: linear.get_submodule(name).weight.requires_grad_(True) for name in masks.layers}
    output = linear(one_sample(linear, input_shape, 1.0, torch.float64))
    grads = torch.autograd.grad(output.sum(), list(weights.values()), allow_unused=True)
    return {name: weight.detach() * grad if grad is not None else torch.zeros_like(weight)
            for (name, weight), grad in zip(weights.items(), grads)}
