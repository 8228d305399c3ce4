"""Compaction: a masked network made physically smaller, with the same outputs, and the spec that rebuilds it.

Only what provably changes no output is removed, whatever the method or granularity:

- a unit (neuron, filter) whose every producer contributes exactly zero: its weights, bias and BatchNorm
  entry are zero, so after BatchNorm and ReLU it is zero (unit pruning zeroes all of these together);
- a unit that nothing reads: every consumer's weights from it are zero;
- in an MLP, a unit whose incoming weights are all zero but whose bias is not emits the constant
  relu(bias); that constant is folded into the next layer's bias first, then the unit is dead;
- an input feature (an MLP's pixel, a CNN's input channel) that no surviving weight reads.

torch-pruning's dependency graph finds what is coupled: a filter goes with its BatchNorm entry and the
matching input channels of the next layers, and the convolutions that write one residual stream prune
the same channels. Unit pruning writes its masks to these groups whole (prunekit/pruning/coupling.py), so
they agree; where masks disagree all the same (weight pruning, or weights edited by hand) the union is kept (a
channel goes only if it is dead in every one of them), and the count of such channels is reported.

The compact model is rebuilt from a fresh one by replaying torch-pruning's pruning history, so a
checkpoint holds plain tensors, lists and numbers: no pickled classes. The spec also records, per
layer, which output and input positions of the original survive: that carries the masks over and
expands a compact model back into the original shapes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from prunekit.layers import prunable_layers

OUT_FNS = {tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_batchnorm_out_channels}
IN_FNS = {tp.prune_conv_in_channels, tp.prune_linear_in_channels}
MASK_SUFFIX = "_mask"


@dataclass
class CompactSpec:
    """What turns a freshly built model into the compact one, as plain data (see module docstring)."""

    history: list = field(default_factory=list)  # torch-pruning's [module name, out-channels?, indices], in order
    kept: dict = field(default_factory=dict)  # module name -> [kept outputs or None, kept inputs or None]
    inputs_kept: list[int] | None = None  # flattened input features (MLP) or input channels (CNN) still read
    coupled_kept: int = 0  # channels kept only because another layer of their residual stream still uses them

    def to_dict(self) -> dict:
        return {"history": self.history, "kept": self.kept, "inputs_kept": self.inputs_kept,
                "coupled_kept": self.coupled_kept}

    @classmethod
    def from_dict(cls, data: dict) -> CompactSpec:
        return cls(data["history"], data["kept"], data["inputs_kept"], data["coupled_kept"])


def strip_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Remove the mask buffers (torch-pruning would leave them at their old shapes); returns them by
    state_dict key."""
    removed = {}
    for name, module in model.named_modules():
        for key in [k for k in module._buffers if k.endswith(MASK_SUFFIX)]:
            removed[f"{name}.{key}" if name else key] = module._buffers.pop(key)
    return removed


def _graph(model: nn.Module, input_shape: tuple[int, ...]) -> tp.DependencyGraph:
    parameter = next(model.parameters())
    example = torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device)
    return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def replay(model: nn.Module, input_shape: tuple[int, ...], spec: CompactSpec) -> nn.Module:
    """Shrink a freshly built ``model`` (no mask buffers) in place as the compaction that made ``spec`` did."""
    if spec.history:
        _graph(model, input_shape).load_pruning_history(copy.deepcopy(spec.history))
    return model


def _zero(t: torch.Tensor | None, index: list[int], dim: int) -> list[bool]:
    """Per index along ``dim``: is that slice of ``t`` all zero (True when ``t`` is None)?"""
    if t is None:
        return [True] * len(index)
    # A reduction over the other dimensions reads the tensor once, without copying slices out of it.
    others = [d for d in range(t.dim()) if d != dim]
    largest = t.detach().abs().amax(dim=others) if others else t.detach().abs()
    return (largest[torch.tensor(index, device=t.device)] == 0).tolist()


def _contributes_nothing(module: nn.Module, fn, index: list[int]) -> list[bool]:
    """Per index, whether ``module``'s part of that channel is exactly zero (producer) or unread (consumer).
    A BatchNorm maps a zero input to bias - weight * mean / std: zero when both affine entries are."""
    if fn in IN_FNS:
        return _zero(module.weight, index, 1)
    return [a and b for a, b in zip(_zero(module.weight, index, 0), _zero(module.bias, index, 0))]


def _removable(group) -> tuple[list[int], int]:
    """Root indices of a group's channels that change no output, and how many channels were kept only
    because the layers writing one residual stream disagree (some dead, some not)."""
    producers: dict[int, list[bool]] = {}  # per root index: one entry per conv/linear writing it
    consumers: dict[int, list[bool]] = {}
    for item in group.items:
        fn, module = item.dep.handler, item.dep.target.module
        if fn not in OUT_FNS | IN_FNS:
            continue  # activations, pooling, sums: nothing of their own to check
        if fn is tp.prune_batchnorm_out_channels:
            continue  # folded into the conv that feeds it, below
        dead = _contributes_nothing(module, fn, list(item.idxs))
        if fn in OUT_FNS:
            following = _batchnorm_after(group, module)
            if following is not None:
                bn_item, bn = following
                position = dict(zip(bn_item.root_idxs, bn_item.idxs))
                bn_dead = _contributes_nothing(bn, tp.prune_batchnorm_out_channels,
                                               [position[r] for r in item.root_idxs])
                dead = [a and b for a, b in zip(dead, bn_dead)]
        for root, flag in zip(item.root_idxs, dead):
            (consumers if fn in IN_FNS else producers).setdefault(root, []).append(flag)
    remove, disputed = [], 0
    for root, dead in producers.items():
        if all(dead) or (consumers.get(root) and all(consumers[root])):
            remove.append(root)
        elif any(dead):
            disputed += 1
    return sorted(remove), disputed


def _batchnorm_after(group, conv: nn.Module):
    """The group item and module of the BatchNorm that normalises ``conv``'s output, if it is in the group."""
    for item in group.items:
        module = item.dep.target.module
        if item.dep.handler is tp.prune_batchnorm_out_channels and item.dep.source.module is conv:
            return item, module
    return None


def _fold_constant_units(layers: list[nn.Linear]) -> None:
    """In a ReLU MLP, move each unit with no incoming weight into the next layer's bias (it emits the
    constant relu(bias)), leaving the unit dead."""
    with torch.no_grad():
        for layer, following in zip(layers, layers[1:]):
            silent = (layer.weight == 0).all(1) & (layer.bias != 0 if layer.bias is not None else False)
            if following.bias is None or not bool(silent.any()):
                continue
            following.bias += following.weight[:, silent] @ torch.relu(layer.bias[silent])
            following.weight[:, silent] = 0
            layer.bias[silent] = 0


def _prune(graph: tp.DependencyGraph, root: nn.Module, fn, remove: list[int], kept: dict) -> None:
    """Prune ``remove`` from ``root`` with everything coupled to it, noting which original positions
    every touched layer keeps."""
    group = graph.get_pruning_group(root, fn, remove)
    for item in group.items:
        handler = item.dep.handler
        if handler not in OUT_FNS | IN_FNS:
            continue
        module = item.dep.target.module
        name = graph._module2name[module]
        dim = 1 if handler in IN_FNS else 0
        size = module.weight.shape[dim]
        entry = kept.setdefault(name, [None, None])
        current = entry[dim] if entry[dim] is not None else list(range(size))
        gone = set(item.idxs)
        entry[dim] = [original for position, original in enumerate(current) if position not in gone]
    group.prune()


def compact(model: nn.Module, input_shape: tuple[int, ...], is_mlp: bool) -> tuple[nn.Module, CompactSpec]:
    """A physically smaller copy of the masked ``model`` (eval outputs unchanged) and its spec.

    The copy carries the masks of what it kept (as buffers, like the original); ``model`` is untouched.
    """
    work = copy.deepcopy(model).eval()
    masks = strip_masks(work)
    layers = prunable_layers(work)
    if is_mlp:
        _fold_constant_units([layer for _, layer in layers])
    graph = _graph(work, input_shape)
    kept: dict[str, list] = {}
    coupled = 0
    # The classifier's units are the classes: never removed.
    for group in list(graph.get_all_groups(ignored_layers=[layers[-1][1]])):
        remove, disputed = _removable(group)
        coupled += disputed
        root, fn = group[0].dep.target.module, group[0].dep.handler
        width = root.weight.shape[0]
        remove = remove[: width - 1]  # a layer keeps at least one unit
        if remove:
            _prune(graph, root, fn, remove, kept)
    first = layers[0][1]
    inputs = first.weight.shape[1]
    unread = [i for i, dead in enumerate(_zero(first.weight, list(range(inputs)), 1)) if dead][: inputs - 1]
    if unread:
        fn = tp.prune_linear_in_channels if isinstance(first, nn.Linear) else tp.prune_conv_in_channels
        _prune(graph, first, fn, unread, kept)
    spec = CompactSpec(
        history=[[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in graph.pruning_history()],
        kept=kept,
        inputs_kept=kept[layers[0][0]][1] if unread else None,
        coupled_kept=coupled,
    )
    for key, mask in masks.items():
        owner, name = key.rsplit(".", 1) if "." in key else ("", key)
        work.get_submodule(owner).register_buffer(name, narrow(mask, spec.kept.get(owner)))
    return work, spec


def narrow(tensor: torch.Tensor, kept: list | None) -> torch.Tensor:
    """The entries of an original-shaped ``tensor`` (weight, bias, BatchNorm entry or mask) that a layer
    with ``kept`` = [outputs, inputs] keeps."""
    for dim, index in enumerate(kept or []):
        if index is not None and dim < tensor.dim():
            tensor = tensor.index_select(dim, torch.tensor(index, device=tensor.device))
    return tensor


def expand(compact_model: nn.Module, original: nn.Module, spec: CompactSpec) -> nn.Module:
    """Write the compact model's tensors into ``original`` (the full-size network, masks registered) at
    their original positions. Removed entries become zero (masks False); BatchNorm statistics of removed
    channels keep ``original``'s values. Returns ``original``, which gives the same outputs on full inputs."""
    source = compact_model.state_dict()
    with torch.no_grad():
        for key, full in original.state_dict().items():
            owner = key.rsplit(".", 1)[0] if "." in key else ""
            kept = spec.kept.get(owner)
            value = source[key].to(full.dtype)
            if kept is None or value.shape == full.shape:
                full.copy_(value)
                continue
            if not key.endswith(("running_mean", "running_var")):
                full.zero_()
            out, inputs = kept
            if inputs is not None and value.dim() > 1:
                rows = torch.tensor(out, device=full.device) if out is not None else None
                widened = full.index_select(0, rows) if rows is not None else full.clone()
                widened.index_copy_(1, torch.tensor(inputs, device=full.device), value)
                value = widened
            if out is not None:
                full.index_copy_(0, torch.tensor(out, device=full.device), value)
            else:
                full.copy_(value)
    return original
