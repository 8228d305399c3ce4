#!/usr/bin/env python
"""Benchmark the lrp criterion: LRP unit scores of some samples against one plain forward+backward of them.

    python scripts/bench_criteria.py                             # VGG-16 small, 100 samples, CPU
    python scripts/bench_criteria.py --model resnet18 --device cuda --repeats 9

The network is prunekit's ``build_model`` of ``--model`` (small variant: 32x32 RGB inputs, 10 classes; the cnn
on 1x28x28), its BatchNorm running statistics moved off their defaults by a few forward passes in train mode
on random data (merging BatchNorm into the convolutions then does real work). The samples are random inputs
with random labels, all in one batch.

- ``lrp``: ``prunekit.pruning.relevance.unit_relevance`` over every module of ``unit_outputs``, composite
  ``--composite``: what the lrp method computes at each pruning step (eval mode, BatchNorm merged once per
  call, the relevance pass, the scores).
- ``backward``: one training step's gradient computation on the same samples: a forward pass in train mode,
  cross-entropy on the true labels and ``loss.backward()`` (gradients set to None before each, untimed).

Both are timed in the same run, in ``--repeats`` interleaved rounds after one warm-up of each, and the
medians count. The last line printed is exactly ``lrp_score_vs_backward=<x>x``, lrp's median over
backward's. The target is at most 4x.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from prunekit.errors import run_script
from prunekit.models import build_model
from prunekit.pipeline import resolve_device
from prunekit.pruning.relevance import COMPOSITES, unit_relevance
from prunekit.pruning.units import unit_outputs

MODELS = {
    "vgg16": ({"name": "vgg16", "variant": "small", "pretrained": False, "weights": None}, (3, 32, 32)),
    "resnet18": ({"name": "resnet18", "variant": "small", "pretrained": False, "weights": None}, (3, 32, 32)),
    "cnn": ({"name": "cnn", "blocks": [[32, 32], [64, 64], [128]], "hidden": 128, "weights": None}, (1, 28, 28)),
}
NUM_CLASSES = 10
SETTLE_BATCHES = 3  # train-mode passes that move BatchNorm's running statistics away from 0 / 1
SEED = 0


def network(name: str, device: torch.device) -> tuple[nn.Module, tuple[int, ...]]:
    """The model ``name`` with BatchNorm statistics of random data, and the shape of one sample."""
    cfg, input_shape = MODELS[name]
    torch.manual_seed(SEED)
    model = build_model(OmegaConf.create(cfg), input_shape, NUM_CLASSES).to(device).train()
    with torch.no_grad():
        for _ in range(SETTLE_BATCHES):
            model(torch.randn(32, *input_shape, device=device) * 2.0 + 0.5)
    return model, input_shape


def seconds(work: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``work``, waiting for the GPU before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(name: str, samples: int, repeats: int, composite: str, device: torch.device) -> dict[str, float]:
    """Median seconds of the LRP unit scores and of one forward+backward, on the same samples."""
    model, input_shape = network(name, device)
    x = torch.randn(samples, *input_shape, device=device)
    y = torch.randint(0, NUM_CLASSES, (samples,), device=device)
    outputs = unit_outputs(model)

    def lrp() -> None:
        unit_relevance(model, [(x, y)], outputs, composite)

    def backward() -> None:
        model.train()
        F.cross_entropy(model(x), y).backward()

    def fresh_backward() -> float:
        model.zero_grad(set_to_none=True)  # as an optimiser's zero_grad does, outside the timed part
        return seconds(backward, device)

    lrp(), backward()  # warm-up: allocator, kernels chosen, lazy imports
    times: dict[str, list[float]] = {"lrp": [], "backward": []}
    for index in range(repeats):
        # the order alternates so that a change of load on the machine reaches both
        for kind in (("lrp", "backward") if index % 2 == 0 else ("backward", "lrp")):
            times[kind].append(seconds(lrp, device) if kind == "lrp" else fresh_backward())
    return {kind: statistics.median(values) for kind, values in times.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="vgg16", choices=list(MODELS))
    parser.add_argument("--samples", type=int, default=100, help="samples scored, in one batch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (median counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--composite", default="epsilon_plus", choices=list(COMPOSITES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    result = measure(args.model, args.samples, args.repeats, args.composite, device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU(s)"
    print(f"{args.model}, {args.samples} samples, composite {args.composite}, {device} ({hardware}), torch "
          f"{torch.__version__}, {torch.get_num_threads()} intra-op thread(s), {args.repeats} round(s); load "
          f"average (1 min) {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", flush=True)
    print(f"lrp unit scores {1000 * result['lrp']:.1f} ms, forward+backward {1000 * result['backward']:.1f} ms "
          f"(medians)", flush=True)
    result["ratio"] = result["lrp"] / result["backward"]
    print(f"lrp_score_vs_backward={result['ratio']:.2f}x", flush=True)
    return result


if __name__ == "__main__":
    run_script(main)
