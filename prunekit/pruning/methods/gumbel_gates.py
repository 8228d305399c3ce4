"""The sampling machinery of ``method=gumbel``: one keep-minus-drop logit per weight, a hard
straight-through Gumbel-Softmax gate per training forward, and the swapped forward that applies it.

Two Gumbel draws g_keep, g_drop and a softmax over (keep, drop) at temperature tau only depend on
d = keep - drop: the soft keep value is sigmoid((d + g_keep - g_drop) / tau), and g_keep - g_drop is one
standard logistic draw. So one logit and one logistic noise per weight give exactly the two-logit
Gumbel-Softmax, at half the memory, noise and optimiser work. The hard gate is [d + noise > 0] (keep with
probability sigmoid(d)); the straight-through gradient is that of the soft gate. (With Adam, one logit at
learning rate 2r moves d as fast as two logits at r each.)

Cost. On the CPU a step is bound by memory traffic, so the gates cost what they read and write: per step,
three passes draw the noise, five give the gates, the gated weights and the open count, three more in the
backward give both gradients (the weights' in place), plus Adam on the logits; a few calls whatever the
number of layers and no Python work per weight. The noise is the quantile of 16 random bits read from a
65,536-entry table, instead of a float uniform draw and a logit (a quarter of the random-number work and no
transcendental function). Each gate's keep probability is then exact to 2^-16 for |d| < 11; a gate with
|d| > 11.8 is always open (closed), where the exact probability of the other outcome is below 8e-6.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

_NOISE_BITS = 16


class LogisticNoise:
    """Standard logistic draws divided by tau for every gate of every layer, from ``generator``.

    One draw fills the noise of all layers at once (three calls, whatever the number of layers): 16 random
    bits per gate index a table of the logistic quantiles at the 65,536 bin midpoints, already divided by
    tau (rebuilt when tau changes). ``scratch``, a buffer shaped like the noise, is free between draws.
    """

    def __init__(self, generator: torch.Generator, shapes: dict[str, torch.Size], like: torch.Tensor):
        levels = 1 << _NOISE_BITS
        self._quantiles = torch.logit((torch.arange(levels, dtype=torch.float64) + 0.5) / levels)
        self.generator, self.like, self.tau = generator, like, None
        sizes = [shape.numel() for shape in shapes.values()]
        total, words, itemsize = sum(sizes), -(-sum(sizes) * _NOISE_BITS // 64), like.element_size()
        # Two buffers, not four: the random words are spent once turned into table indices, so the noise
        # overwrites them, and the indices once the noise is read, so ``scratch`` reuses them. Fewer distinct
        # megabytes per step made a LeNet-300-100 step ~0.1 ms cheaper.
        noise = torch.empty(max(total * itemsize, words * 8), dtype=torch.uint8, device=like.device)
        index = torch.empty(total * max(itemsize, 4), dtype=torch.uint8, device=like.device)
        self._words = noise[: words * 8].view(torch.int64)
        self.values = noise[: total * itemsize].view(like.dtype)
        self._index = index[: total * 4].view(torch.int32)
        self.scratch = index[: total * itemsize].view(like.dtype)
        # The CPU widens uint16 in one pass; CUDA barely supports uint16, so there int16 is widened, then masked
        self._bits = self._words.view(torch.uint16 if like.device.type == "cpu" else torch.int16)[:total]
        self.views = {name: part.view(shape) for (name, shape), part in zip(shapes.items(), self.values.split(sizes))}
        self.set_tau(1.0)

    def set_tau(self, tau: float) -> None:
        """Divide the noise by ``tau`` from the next draw on."""
        if tau != self.tau:
            self.table = (self._quantiles / tau).to(device=self.like.device, dtype=self.like.dtype)
            self.tau = tau

    def draw(self) -> torch.Tensor:
        """A fresh draw of noise / tau for every gate, flat (``views`` holds each layer's part)."""
        self._words.random_(-(2**63), None, generator=self.generator)  # all 64 bits random
        self._index.copy_(self._bits)
        if self._bits.dtype == torch.int16:  # sign-extended: the mask maps it to 0..65535, as uint16 would be
            self._index.bitwise_and_(0xFFFF)
        return torch.index_select(self.table, 0, self._index, out=self.values)


class _SampleGates(torch.autograd.Function):
    """(w_1..w_k, d_1..d_k) -> (w_1 * hard_1, ..., w_k * hard_k, gates open): one sample for every layer.

    One function for all the layers keeps the work per step to a few calls whatever the number of layers:
    the gate math runs on the flat noise buffer (all layers' z side by side) and the per-layer parts use
    foreach calls. The layers consume the gated weights through their ordinary linear / conv, so autograd
    hands this backward dL/d(gated weight) per layer, from which the straight-through gradients follow:
    dL/dw = dL/d(w gate) * hard and dL/dd = (dL/d(w gate) * w + dL/dcount) / tau * s (1 - s).
    """

    @staticmethod
    def forward(ctx, gates: "GateSet", *tensors):
        k = len(tensors) // 2
        weights, logits = tensors[:k], tensors[k:]
        tau = gates.noise.tau
        z = gates.noise.draw()  # logistic / tau for every gate, flat; gates.soft_views are its per-layer parts
        torch._foreach_add_(gates.soft_views, logits, alpha=1.0 / tau)  # z = (d + noise) / tau
        torch.gt(z, 0, out=gates.hard)
        z.sigmoid_()  # the soft gate s, kept for the backward's slope s (1 - s)
        gates.generation += 1
        ctx.gates, ctx.generation, ctx.tau = gates, gates.generation, tau
        ctx.save_for_backward(*weights)
        return (*torch._foreach_mul(weights, gates.hard_views), gates.hard.sum())

    @staticmethod
    def backward(ctx, *grads):
        gates = ctx.gates
        if gates.generation != ctx.generation:
            raise RuntimeError(
                "gumbel gates: another training forward ran before this backward; "
                "run backward after each training-mode forward (or use model.eval())"
            )
        grad_gated, grad_count = list(grads[:-1]), grads[-1]
        weights = ctx.saved_tensors
        k, inv_tau = len(weights), 1.0 / ctx.tau
        # (dL/d(w gate) w + dL/dcount) / tau, then times s (1 - s): two passes, each writing its result once
        grad_logits = torch._foreach_addcmul([grad_count * inv_tau] * k, grad_gated, weights, value=inv_tau)
        for grad, soft in zip(grad_logits, gates.soft_views):
            torch.ops.aten.sigmoid_backward.grad_input(grad, soft, grad_input=grad)  # times s (1 - s)
        if not any(ctx.needs_input_grad[1:k + 1]):
            return (None, *[None] * k, *grad_logits)
        # dL/d(w gate) becomes dL/dw in place: autograd made it for this function alone (the gated weight's
        # only consumer is its layer's linear / conv) and nothing reads it after this
        torch._foreach_mul_(grad_gated, gates.hard_views)
        return (None, *grad_gated, *grad_logits)


class GateSet:
    """Keep-minus-drop logits for the weights of ``layers`` (one parameter per layer) and the swapped forwards.

    While installed, a layer in training mode uses its weight times a sampled gate and the set records how
    many gates were open (for the density term); in eval mode a layer uses the deterministic gate d > 0.
    Biases are never gated. The modules' own parameters and state_dict are untouched.

    A sample covers every layer: the first gated layer a forward reaches draws it, the others take their
    part; a layer that already took its part starts the next sample (the next forward). The 0/1 gates and
    the soft gates a sample leaves for its backward live in buffers reused by every sample, so the backward of
    a sample must run before the next training forward, as it does in any forward-backward-step loop;
    ``generation`` turns a violation into an error, not a silent mistake.
    """

    def __init__(self, layers: dict[str, nn.Module], init_logit: float, generator: torch.Generator):
        self.layers = layers
        self.logits = {
            name: nn.Parameter(torch.full_like(m.weight.detach(), init_logit))
            for name, m in layers.items()
        }
        self.numel = sum(p.numel() for p in self.logits.values())
        self.generator = generator
        first = next(iter(self.logits.values()))
        self.noise = LogisticNoise(generator, {name: d.shape for name, d in self.logits.items()}, first)
        self.hard = self.noise.scratch  # 0/1 gates, flat, in the buffer the noise leaves free between draws
        sizes = [d.numel() for d in self.logits.values()]
        shapes = [d.shape for d in self.logits.values()]
        self.hard_views = [part.view(shape) for part, shape in zip(self.hard.split(sizes), shapes)]
        self.soft_views = list(self.noise.views.values())  # z, then the soft gates, per layer
        self.generation = 0
        self.open_count: torch.Tensor | None = None  # gates open in the last training sample
        self._gated: dict[str, torch.Tensor] = {}  # the current sample's gated weights not yet taken
        self.installed = False

    @property
    def tau(self) -> float:
        return self.noise.tau

    @tau.setter
    def tau(self, value: float) -> None:
        self.noise.set_tau(value)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.logits.values())

    # Always eager, also inside a compiled forward (compile=true): the noise buffers are views of one byte buffer
    # in several dtypes, which AOTAutograd cannot take as mutated inputs, and the sample must draw from the
    # run's own generator to be the same stream compiled or not. The layers' linear / conv stay in the graph.
    @torch.compiler.disable
    def _sample(self) -> None:
        names = list(self.layers)
        *gated, self.open_count = _SampleGates.apply(
            self, *(self.layers[n].weight for n in names), *(self.logits[n] for n in names))
        self._gated = dict(zip(names, gated))

    def _forward(self, name: str, module: nn.Module) -> Callable:
        conv, logit = isinstance(module, nn.Conv2d), self.logits[name]

        def forward(x: torch.Tensor) -> torch.Tensor:
            if module.training:
                if name not in self._gated:
                    self._sample()
                weight = self._gated.pop(name)
            else:
                weight = module.weight * (logit > 0)
            return module._conv_forward(x, weight, module.bias) if conv else F.linear(x, weight, module.bias)

        return forward

    def install(self) -> None:
        """Swap each layer's forward for the gated one (idempotent)."""
        if self.installed:
            return
        for name, module in self.layers.items():
            module.forward = self._forward(name, module)
        self.installed = True

    def remove(self) -> None:
        """Give every layer its own forward back."""
        for module in self.layers.values():
            module.__dict__.pop("forward", None)
        self._gated, self.open_count = {}, None
        self.installed = False

    def take_open_count(self) -> torch.Tensor | None:
        """Gates open in the last training sample (differentiable), then forget it."""
        count, self.open_count = self.open_count, None
        return count

    @torch.no_grad()
    def deterministic(self) -> dict[str, torch.Tensor]:
        """The logits per layer, detached (keep where > 0, or the top-k of them)."""
        return {name: logit.detach().clone() for name, logit in self.logits.items()}
