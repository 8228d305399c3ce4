#!/usr/bin/env python
"""Benchmark compaction: how much faster a filter-pruned CNN runs once physically smaller, with the same outputs.

    python scripts/bench_compact.py                    # CPU, batch 64
    python scripts/bench_compact.py --device cuda

For VGG16-small and ResNet18-small (``model.variant=small``: 32x32 RGB inputs, 10 classes), built with
prunekit's ``build_model``, three cases: each network with half of its filters pruned, and ResNet18-small pruned
to half of its FLOPs (``method.target_flops=0.5``):

1. the dense network gets non-trivial BatchNorm running statistics from a few forward passes in train mode
   on random data (with the default mean 0 / variance 1 a pruned channel's BatchNorm would emit 0 anyway,
   and the output comparison below would be trivially exact);
2. a copy is pruned as the pipeline prunes it: a ``MaskSet`` and the ``magnitude`` method at unit
   granularity, scope ``layer``, by coupled groups (the convolutions writing one residual stream lose the same
   channels), removing 50% of the channels of every group, or the same fraction of every group until the
   network keeps at most half of the dense FLOPs (the classifier's units are the classes and are never pruned);
3. ``prunekit.pruning.compaction.compact`` turns the masked copy into a physically smaller network.

Timing: one forward pass of a random batch in eval mode under ``torch.inference_mode``, measured with
``prunekit.latency.latency_table`` as a run's summary is: after warm-up, dense and compact take turns, one pass
each per round, for rounds within a time budget; the table gives each network's median and interquartile range,
and the speedup is paired (the median over rounds of dense over compact in the same round), so a burst of load
on the machine hits both. "dense" is the same architecture unpruned, with the same statistics.

``max |diff|`` is the largest absolute difference between the masked and the compact network's logits on
one random batch, in eval mode; it should be float32 rounding noise (about 1e-6). FLOPs are
``prunekit.metrics.flops_per_layer`` for one sample (prunable layers only, a multiply-add counts 2).
``coupled kept`` is ``CompactSpec.coupled_kept``: channels the masks pruned but compaction had to keep
because another convolution writing the same residual stream still uses them (0 when masks follow the coupled
groups).

The last line printed is exactly ``compact_speedup_vgg16=<x>x compact_speedup_resnet18=<y>x
compact_speedup_resnet18_filters=<z>x max_abs_diff=<d>``: VGG16-small at half its filters, ResNet18-small at
half its FLOPs and at half its filters, speedups being the paired dense over compact ratios above and ``d`` the
largest of the output differences. On a busy machine torch's
multi-threaded kernels stall; compare the load average printed with the table, and "unstable" (any spread
above ``prunekit.latency.UNSTABLE_SPREAD`` times its median).
"""
from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Sequence

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

from prunekit.config import MethodConfig
from prunekit.models.adapt import ConvNetConfig
from prunekit.errors import run_script
from prunekit.latency import latency_table
from prunekit.layers import is_mlp
from prunekit.metrics import flops_per_layer
from prunekit.models import build_model
from prunekit.pipeline import resolve_device
from prunekit.pruning.compaction import compact
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class

INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
# case -> (model, what the pruning aims at): half of every group's filters, or half of the dense FLOPs
CASES = {"vgg16": ("vgg16", {"sparsity": 0.5}), "resnet18": ("resnet18", {"target_flops": 0.5}),
         "resnet18_filters": ("resnet18", {"sparsity": 0.5})}
SETTLE_BATCHES = 3  # train-mode passes that move BatchNorm's running statistics away from 0 / 1
SEED = 0


def dense_network(name: str, device: torch.device) -> nn.Module:
    """The small variant of ``name`` with BatchNorm statistics of random data, in eval mode."""
    torch.manual_seed(SEED)
    model = build_model(OmegaConf.structured(ConvNetConfig(name=name, variant="small")), INPUT_SHAPE,
                        NUM_CLASSES).to(device)
    model.train()
    with torch.no_grad():
        for _ in range(SETTLE_BATCHES):
            # inputs off mean 0 / std 1; at BatchNorm's momentum 0.1 three passes move the running
            # statistics about 27% of the way from their defaults (0 / 1) to the data's
            model(torch.randn(32, *INPUT_SHAPE, device=device) * 2.0 + 0.5)
    return model.eval()


def prune_filters(dense: nn.Module, target: dict) -> nn.Module:
    """A copy of ``dense`` with its filters masked by coupled groups as the pruning stage does it, to ``target``
    (``sparsity`` or ``target_flops``)."""
    masked = copy.deepcopy(dense)
    masks = MaskSet(masked, INPUT_SHAPE)
    cfg = OmegaConf.structured(MethodConfig(name="magnitude", granularity="unit", scope="layer", **target))
    method = get_method_class("magnitude")
    # magnitude scores read the weights only: no data needed
    method(cfg, masked, masks, None, SEED).prune(method.schedule_target(cfg))
    return masked


@torch.inference_mode()
def max_abs_diff(masked: nn.Module, compacted: nn.Module, batch: int, device: torch.device) -> float:
    """Largest absolute difference between the two networks' logits on one random batch (eval mode)."""
    x = torch.randn(batch, *INPUT_SHAPE, device=device)
    return float((masked.eval()(x) - compacted.eval()(x)).abs().max())


def conv_channels(model: nn.Module) -> int:
    """Output channels of all convolutions: what compaction can remove."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def measure(case: str, batch: int, device: torch.device) -> dict:
    """Dense and compact figures of one case (see the module docstring)."""
    name, target = CASES[case]
    dense = dense_network(name, device)
    masked = prune_filters(dense, target)
    compacted, spec = compact(masked, INPUT_SHAPE, is_mlp(masked))
    compacted = compacted.to(device).eval()
    latency = latency_table({"dense": (dense, INPUT_SHAPE), "compact": (compacted, INPUT_SHAPE)}, [batch], device)
    ms, spread, key = latency.medians(), latency.iqrs(), f"b{batch}"
    return {
        "model": case, "target": ", ".join(f"{k}={v}" for k, v in target.items()),
        "dense_ms": ms["dense"][key], "compact_ms": ms["compact"][key],
        "dense_iqr_ms": spread["dense"][key], "compact_iqr_ms": spread["compact"][key],
        "speedup": latency.ratio("dense", "compact", key), "unstable": latency.unstable(),
        "params_dense": sum(p.numel() for p in dense.parameters()),
        "params_compact": sum(p.numel() for p in compacted.parameters()),
        "flops_dense": sum(flops_per_layer(dense, INPUT_SHAPE).values()),
        "flops_compact": sum(flops_per_layer(compacted, INPUT_SHAPE).values()),
        "channels_dense": conv_channels(dense), "channels_compact": conv_channels(compacted),
        "coupled_kept": spec.coupled_kept,
        "max_abs_diff": max_abs_diff(masked, compacted, batch, device),
    }


def summary_line(rows: dict[str, dict]) -> str:
    """The last line: every case's speedup and the worst output difference."""
    worst = max(row["max_abs_diff"] for row in rows.values())
    speedups = " ".join(f"compact_speedup_{case}={row['speedup']:.2f}x" for case, row in rows.items())
    return f"{speedups} max_abs_diff={worst:.1e}"


def render(rows: dict[str, dict], title: str, console: Console) -> None:
    """Two narrow tables (they stay legible at 80 columns, e.g. in a log): time and size, then what was kept."""
    timing = Table(title=title, title_justify="left")
    for column in ("model", "dense ms", "compact ms", "speedup", "params dense/compact", "FLOPs dense/compact"):
        timing.add_column(column, justify="left" if column == "model" else "right")
    kept = Table(title="what compaction kept", title_justify="left")
    for column in ("model", "pruned to", "conv channels", "coupled kept", "max |diff|"):
        kept.add_column(column, justify="left" if column == "model" else "right")
    for r in rows.values():
        timing.add_row(r["model"], f"{r['dense_ms']:.1f}", f"{r['compact_ms']:.1f}",
                       f"[bold]{r['speedup']:.2f}x[/bold]",
                       f"{r['params_dense'] / 1e6:.2f}M / {r['params_compact'] / 1e6:.2f}M",
                       f"{r['flops_dense'] / 1e6:.0f}M / {r['flops_compact'] / 1e6:.0f}M")
        kept.add_row(r["model"], r["target"], f"{r['channels_dense']} -> {r['channels_compact']}", str(r["coupled_kept"]),
                     f"{r['max_abs_diff']:.1e}")
    console.print(timing)
    console.print(kept)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="samples per timed forward pass")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    rows = {case: measure(case, args.batch, device) for case in CASES}
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU(s)"
    render(rows, f"compaction after pruning by coupled groups (magnitude, unit, per layer), batch {args.batch}, "
                 f"{device} ({hardware})", Console())
    spreads = ", ".join(f"{r['model']} {r['dense_iqr_ms']:.1f} / {r['compact_iqr_ms']:.1f}" for r in rows.values())
    unstable = any(r["unstable"] for r in rows.values())
    # torch's own default thread count is used: as many intra-op threads as the machine offers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) (torch's default); timed in "
          f"turns as a run's latency is (IQR ms dense / compact: {spreads}; unstable: {unstable}); load average "
          f"(1 min) {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", flush=True)
    print(summary_line(rows), flush=True)
    return rows


if __name__ == "__main__":
    run_script(main)
