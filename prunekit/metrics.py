"""What a pruned model really costs: parameters (total, non-zero, effective), density and FLOPs.

Prunable layers are every ``nn.Linear`` and ``nn.Conv2d``, in ``named_modules()`` order. Pruning
sets weights to exactly zero in place, so everything here reads the weights alone, never masks.

Definitions (cited in results files, so stated exactly):

- ``params_total``: all entries of ``model.parameters()``.
- ``params_nonzero``: the non-zero entries among them.
- ``density``: non-zero prunable weights / prunable weights (weight tensors of Linear and Conv2d
  layers only; biases, BatchNorm and other parameters excluded).
- alive weight: a prunable weight ``[o, i, ...]`` that is non-zero, whose input unit ``i`` (a
  feature of a Linear layer, a channel of a Conv2d) is reachable from the network's input through
  non-zero weights, and whose output unit ``o`` reaches the network's output through non-zero
  weights. Channels count as reachable when any spatial position is.
- alive unit: an output unit (neuron, channel) of a prunable or BatchNorm layer that is reachable
  from the input and reaches the output. A unit cut off from the input emits a constant, which
  could be folded into the next layer's biases, so it is counted as dead with its bias.
- ``params_effective``: what a network without dead units keeps: alive weights, plus the biases of
  alive units of prunable layers, plus the BatchNorm weight and bias of alive channels, plus every
  other parameter in full. Biases of alive units count even when zero, so this can exceed
  ``params_nonzero``.
- FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` for ONE sample, for prunable layers
  only (a multiply-add counts 2; bias additions, BatchNorm, activations, pooling and residual sums
  are ignored). ``flops_dense`` is their sum; ``flops_effective`` counts the multiply-adds of alive weights
  only (the weights ``params_effective`` counts): each alive weight costs 2 per output position it is
  applied at (one position for a Linear layer on flat inputs, the output's height x width for a Conv2d),
  i.e. its layer's FLOPs over the layer's weight count. A weight that reads a dead unit or feeds one costs
  nothing, as in a network without the dead units; after unit pruning this equals ``flops_compact`` (except
  for channels compaction keeps because a residual sum couples them).
- ``collapsed_layers``: the prunable layers without a single alive weight (the network is cut there).
- ``classes_without_path``: the output indices that no input reaches through non-zero weights, i.e. the
  dead units of the last prunable layer (the classifier); such a class's logit is a constant.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` with its name, in ``named_modules()`` order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, PRUNABLE)]


def is_mlp(model: nn.Module) -> bool:
    """True when every prunable layer is Linear: a chain of dense matrices on flattened inputs."""
    return all(isinstance(layer, nn.Linear) for _, layer in prunable_layers(model))


def _sample(model: nn.Module, input_shape: tuple[int, ...], value: float, dtype: torch.dtype) -> torch.Tensor:
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


def flops_per_layer(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs of each prunable layer for one sample of ``input_shape`` (multiply-add = 2, bias ignored).

    Measured with ``FlopCounterMode`` on a forward pass of one zero sample, in eval mode and without
    gradients, on the model's device; the model is left as it was. A layer the forward pass does
    not call gets 0.
    """
    dtype = next(model.parameters()).dtype
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(_sample(model, input_shape, 0.0, dtype))
    counts = counter.get_flop_counts()
    # FlopCounterMode names modules by their path below the root, prefixed with the root's class name.
    root = type(model).__name__
    return {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name, _ in prunable_layers(model)}


@dataclass
class _Reach:
    weights: dict[str, torch.Tensor]  # alive weights, per prunable layer
    units: dict[str, torch.Tensor]  # alive output units, per prunable and BatchNorm layer


def _units(t: torch.Tensor, linear: bool) -> torch.Tensor:
    """Reduce an activation (or its gradient) of batch 1 to 'positive somewhere' per unit: the last
    dimension for Linear layers, the channel dimension (spatial positions reduced) otherwise."""
    dim = t.dim() - 1 if linear else 1
    return (t > 0).movedim(dim, 0).reshape(t.shape[dim], -1).any(dim=1)


def _binary_probe(model: nn.Module) -> nn.Module:
    """A float64 copy whose forward pass counts paths: each prunable weight becomes 1 where it is
    non-zero, biases 0, BatchNorm the identity. All values stay >= 0, so ReLU, pooling and residual
    sums act as 'is reachable'; float64 holds path counts of VGG-16 (about 1e53) without overflow."""
    probe = copy.deepcopy(model).double().eval().requires_grad_(False)
    with torch.no_grad():
        for _, layer in prunable_layers(probe):
            layer.weight.copy_(layer.weight != 0)
            if layer.bias is not None:
                layer.bias.zero_()
        for norm in probe.modules():
            if isinstance(norm, _BatchNorm):
                norm.eps = 0.0
                norm.running_mean.fill_(0.0)
                norm.running_var.fill_(1.0)
                if norm.affine:
                    norm.weight.fill_(1.0)
                    norm.bias.fill_(0.0)
    return probe


def _alive_mask(layer: nn.Module, in_reach: torch.Tensor, out_reach: torch.Tensor) -> torch.Tensor:
    """Weight ``[o, i, ...]`` is alive iff non-zero, input unit ``i`` reachable and output ``o`` reaching."""
    # Grouped convolutions see only their group's input channels: weight [o, i] reads channel
    # (o // out_per_group) * in_per_group + i. Linear and ordinary Conv2d have one group.
    groups = getattr(layer, "groups", 1)
    in_reach = in_reach.view(groups, -1).repeat_interleave(layer.weight.shape[0] // groups, dim=0)
    spatial = (1,) * (layer.weight.dim() - 2)
    return (layer.weight != 0) & in_reach.view(*in_reach.shape, *spatial) & out_reach.view(-1, 1, *spatial)


def _reachability(model: nn.Module, input_shape: tuple[int, ...]) -> _Reach:
    """Forward an all-ones sample through the binary probe (what is reachable from the input) and
    backpropagate from the sum of the outputs (what reaches an output: gradient > 0)."""
    probe = _binary_probe(model)
    watched = {n: m for n, m in probe.named_modules() if isinstance(m, (*PRUNABLE, _BatchNorm))}
    reached_in: dict[str, torch.Tensor] = {}
    reached_out: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def record(name: str, linear: bool):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            # Reduced at once: a later in-place ReLU or residual sum may overwrite these tensors.
            reached_in[name] = _units(args[0].detach(), linear)
            reached_out[name] = _units(output.detach(), linear)
            output.retain_grad()
            outputs[name] = output

        return hook

    handles = [m.register_forward_hook(record(n, isinstance(m, nn.Linear))) for n, m in watched.items()]
    try:
        probe(_sample(probe, input_shape, 1.0, torch.float64).requires_grad_(True)).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    reaches = {}
    for name, out in outputs.items():
        if not (torch.isfinite(out).all() and torch.isfinite(out.grad).all()):
            raise ArithmeticError(f"path counts overflowed float64 at layer {name}; the network is too deep")
        reaches[name] = _units(out.grad, isinstance(watched[name], nn.Linear))
    # A unit is alive iff reachable (its output is positive) and reaching (its gradient is positive).
    units = {name: reached_out[name] & reaches[name] for name in outputs}
    weights = {
        name: _alive_mask(layer, reached_in[name], reaches[name])
        if name in outputs
        else torch.zeros_like(layer.weight, dtype=torch.bool)  # never called in the forward pass
        for name, layer in prunable_layers(model)
    }
    return _Reach(weights, units)


def alive_weights(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per prunable layer, a bool tensor shaped like its weight: True where the weight is alive
    (non-zero and on a path from the input to the output; see the module docstring)."""
    return _reachability(model, input_shape).weights


def _collapse(model: nn.Module, reach: _Reach) -> dict:
    layers = prunable_layers(model)
    name, classifier = layers[-1]
    # A classifier the forward pass never calls has no alive unit: no class has a path.
    with_path = reach.units.get(name, torch.zeros(classifier.weight.shape[0], dtype=torch.bool))
    return {
        "collapsed_layers": [n for n, _ in layers if not reach.weights[n].any()],
        "classes_without_path": (~with_path).nonzero().flatten().tolist(),
    }


def collapse(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Whether pruning cut the network: ``collapsed_layers`` (names of prunable layers without an alive
    weight) and ``classes_without_path`` (output indices no input reaches), as defined in the module
    docstring. Both are empty for a network that still connects every class to the input."""
    return _collapse(model, _reachability(model, input_shape))


def _nonzero(t: torch.Tensor | None) -> int:
    return 0 if t is None else int(torch.count_nonzero(t))


def _numel(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel()


def _alive_entries(module: nn.Module, units: torch.Tensor | None) -> int:
    """Bias and BatchNorm-affine entries kept for the alive units of ``module`` (1 per unit per tensor)."""
    kept = 0 if units is None else int(units.sum())
    owned = [module.bias] + ([module.weight] if isinstance(module, _BatchNorm) else [])
    return sum(kept for t in owned if t is not None)


def _rows(model: nn.Module, flops: dict[str, int], reach: _Reach) -> list[dict]:
    rows = []
    for name, layer in prunable_layers(model):
        weight_nonzero, alive = _nonzero(layer.weight), int(reach.weights[name].sum())
        density = weight_nonzero / layer.weight.numel()
        rows.append(
            {
                "layer": name,
                "type": type(layer).__name__,
                "shape": "x".join(str(d) for d in layer.weight.shape),
                "params": layer.weight.numel() + _numel(layer.bias),
                "nonzero": weight_nonzero + _nonzero(layer.bias),
                "effective": alive + _alive_entries(layer, reach.units.get(name)),
                "density": density,
                "flops": flops[name],
                # exact: a layer's FLOPs are 2 x output positions x weight entries
                "flops_effective": flops[name] * alive // layer.weight.numel(),
            }
        )
    return rows


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """One row per prunable layer, in ``named_modules()`` order, with the columns:

    ``layer`` (module name), ``type`` (class name), ``shape`` (weight shape, e.g. ``"300x784"``),
    ``params`` (weight + bias entries), ``nonzero`` (non-zero weight + bias entries), ``effective``
    (alive weights + biases of alive units), ``density`` (non-zero weights / weights, biases
    excluded), ``flops`` (one sample) and ``flops_effective`` (the FLOPs of the alive weights alone).
    Definitions are in the module docstring.
    """
    return _rows(model, flops_per_layer(model, input_shape), _reachability(model, input_shape))


def summary_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """``params_total``, ``params_nonzero``, ``params_effective``, ``density``, ``flops_dense``,
    ``flops_effective`` (numbers) and ``collapsed_layers``, ``classes_without_path`` (lists, see
    :func:`collapse`) of ``model`` for samples of ``input_shape``, as defined in the module docstring."""
    return measure(model, input_shape)[0]


def measure(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict, list[dict]]:
    """:func:`summary_metrics` and :func:`layer_table` together, paying for one reachability pass."""
    reach = _reachability(model, input_shape)
    rows = _rows(model, flops_per_layer(model, input_shape), reach)
    params = list(model.parameters())
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    # Parameters owned by prunable and BatchNorm layers are counted unit by unit; the rest in full.
    counted = {id(t) for _, m in prunable_layers(model) + norms for t in (m.weight, m.bias) if t is not None}
    weights = sum(layer.weight.numel() for _, layer in prunable_layers(model))
    summary = {
        "params_total": sum(p.numel() for p in params),
        "params_nonzero": sum(_nonzero(p) for p in params),
        "params_effective": sum(row["effective"] for row in rows)
        + sum(_alive_entries(m, reach.units.get(n)) for n, m in norms)
        + sum(p.numel() for p in params if id(p) not in counted),
        "density": sum(_nonzero(layer.weight) for _, layer in prunable_layers(model)) / weights,
        "flops_dense": sum(row["flops"] for row in rows),
        "flops_effective": sum(row["flops_effective"] for row in rows),
        **_collapse(model, reach),
    }
    return summary, rows
