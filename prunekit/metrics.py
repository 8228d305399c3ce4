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
- ``flops_fraction`` = ``flops_effective / flops_dense`` and ``params_fraction`` = ``params_effective /
  params_total``: what a budget (``method.target_flops``, ``method.target_params``) is measured by.
- ``collapsed_layers``: the prunable layers without a single alive weight (the network is cut there).
- ``classes_without_path``: the output indices that no input reaches through non-zero weights, i.e. the
  dead units of the last prunable layer (the classifier); such a class's logit is a constant.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

from prunekit.layers import eval_mode, one_sample, prunable_layers
from prunekit.reachability import Reach, cut, reachability


def flops_per_layer(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs of each prunable layer for one sample of ``input_shape`` (multiply-add = 2, bias ignored).

    Measured with ``FlopCounterMode`` on a forward pass of one zero sample, in eval mode and without
    gradients, on the model's device; the model is left as it was. A layer the forward pass does
    not call gets 0.
    """
    dtype = next(model.parameters()).dtype
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(one_sample(model, input_shape, 0.0, dtype))
    counts = counter.get_flop_counts()
    # FlopCounterMode names modules by their path below the root, prefixed with the root's class name.
    root = type(model).__name__
    return {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name, _ in prunable_layers(model)}


def alive_weights(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per prunable layer, a bool tensor shaped like its weight: True where the weight is alive
    (non-zero and on a path from the input to the output; see the module docstring)."""
    return reachability(model, input_shape).weights


def collapse(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Whether pruning cut the network: ``collapsed_layers`` (names of prunable layers without an alive
    weight) and ``classes_without_path`` (output indices no input reaches), as defined in the module
    docstring. Both are empty for a network that still connects every class to the input."""
    return cut(model, reachability(model, input_shape))


def _nonzero(t: torch.Tensor | None) -> int:
    return 0 if t is None else int(torch.count_nonzero(t))


def _numel(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel()


def _alive_entries(module: nn.Module, units: torch.Tensor | None) -> int:
    """Bias and BatchNorm-affine entries kept for the alive units of ``module`` (1 per unit per tensor)."""
    kept = 0 if units is None else int(units.sum())
    owned = [module.bias] + ([module.weight] if isinstance(module, _BatchNorm) else [])
    return sum(kept for t in owned if t is not None)


def _rows(model: nn.Module, flops: dict[str, int], reach: Reach) -> list[dict]:
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
    return _rows(model, flops_per_layer(model, input_shape), reachability(model, input_shape))


def summary_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """``params_total``, ``params_nonzero``, ``params_effective``, ``density``, ``flops_dense``,
    ``flops_effective``, ``flops_fraction``, ``params_fraction`` (numbers) and ``collapsed_layers``,
    ``classes_without_path`` (lists, see
    :func:`collapse`) of ``model`` for samples of ``input_shape``, as defined in the module docstring."""
    return measure(model, input_shape)[0]


def measure(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict, list[dict]]:
    """:func:`summary_metrics` and :func:`layer_table` together, paying for one reachability pass."""
    reach = reachability(model, input_shape)
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
        **cut(model, reach),
    }
    summary["flops_fraction"] = summary["flops_effective"] / max(summary["flops_dense"], 1)
    summary["params_fraction"] = summary["params_effective"] / summary["params_total"]
    return summary, rows
