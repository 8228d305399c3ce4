#!/usr/bin/env python
"""Benchmark one training epoch of VGG16-small and ResNet18-small: prunekit's engine with the GPU options against
a plain fp32 eager loop over a DataLoader.

    python scripts/bench_gpu.py                                        # CUDA when present: 50,000 samples
    python scripts/bench_gpu.py --device cpu --samples 64 --no-compile # a smoke check of the script on the CPU

The data is CIFAR-10-shaped: ``--samples`` random 3x32x32 uint8 images with random labels (10 classes), held
on the device. For each network (prunekit's ``build_model``, variant small), from the same initial weights:

- prunekit: an in-memory ``Dataset`` over those tensors (normalised per batch on the device, no augmentation)
  and ``engine.train_epoch`` with ``Acceleration(precision=--precision, channels_last=True, compile=True)``
  and, on CUDA, prunekit's default ``cudnn.benchmark``;
- plain: ``torch.utils.data.DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`` over the same tensors,
  the same normalisation per batch, and the standard fp32 eager loop (forward, cross_entropy, zero_grad,
  backward, step), with torch's default flags.

Both use the same optimiser implementation (fused SGD, prunekit's defaults, constant learning rate; with
``--precision fp16`` prunekit's side uses torch's default SGD, as its runs do under a gradient scaler) and the same
batch size. Each side first trains one full batch and the last partial one (so compilation and cuDNN's autotuner
have seen both batch shapes) and then gets its initial weights back: the timed epoch is the second pass only.

The last line printed is exactly ``vgg16_epoch_s=<a> resnet18_epoch_s=<b> speedup_vs_plain=<x>x peak_mem_gb=<m>``:
a and b are prunekit's epoch seconds, x the plain loop's total over prunekit's, m the peak CUDA memory allocated
during prunekit's epochs (0 on the CPU). The issue's target on a GPU is x >= 3.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from prunekit.acceleration import PRECISIONS, Acceleration
from prunekit.config import OptimConfig
from prunekit.data import Dataset, Split
from prunekit.data.statistics import channel_stats
from prunekit.engine import build_optimizer, train_epoch
from prunekit.errors import UserError, run_script
from prunekit.models import build_model
from prunekit.latency import synchronize
from prunekit.pipeline import resolve_device

MODELS = ("vgg16", "resnet18")
INPUT_SHAPE, NUM_CLASSES = (3, 32, 32), 10


def random_images(samples: int, device: torch.device, seed: int, shape: tuple[int, ...] = INPUT_SHAPE,
                  classes: int = NUM_CLASSES) -> Dataset:
    """``samples`` random uint8 images and labels on ``device`` as prunekit's in-memory dataset (train split only;
    CIFAR-10-shaped unless told otherwise)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (samples, *shape), dtype=torch.uint8, generator=generator).to(device)
    y = torch.randint(0, classes, (samples,), generator=generator).to(device)
    mean, std = channel_stats(x)
    empty = Split(x[:0], y[:0])
    return Dataset("random images", Split(x, y), empty, empty, classes, shape, True, mean, std,
                   crop_padding=0, hflip=False)


def network(name: str, seed: int, device: torch.device) -> nn.Module:
    """prunekit's ``name`` network, small variant, initialised from ``seed``."""
    torch.manual_seed(seed)
    cfg = OmegaConf.create({"name": name, "variant": "small", "pretrained": False, "weights": None})
    return build_model(cfg, INPUT_SHAPE, NUM_CLASSES).to(device)


def warm_up_head(data: Dataset, batch_size: int) -> Dataset:
    """The first samples of ``data``: one full batch and one of the last batch's size (both shapes an epoch meets)."""
    n = len(data.train)
    size = min(n, batch_size + n % batch_size)
    return dataclasses.replace(data, train=Split(data.train.x[:size], data.train.y[:size]))


def prunekit_epoch(model: nn.Module, data: Dataset, batch_size: int, acceleration: Acceleration) -> float:
    """Seconds of one ``engine.train_epoch`` with ``acceleration``, after a warm-up pass that is then undone."""
    device = next(model.parameters()).device
    opt_cfg = OmegaConf.structured(OptimConfig(epochs=1, batch_size=batch_size, lr_schedule="constant"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with acceleration.process_settings():
        accelerated = acceleration.bind(model)

        def optimizer() -> torch.optim.Optimizer:
            return build_optimizer([{"params": list(model.parameters())}], opt_cfg, accelerated.fused_optimizer)

        train_epoch(model, warm_up_head(data, batch_size), optimizer(), opt_cfg, [], torch.Generator().manual_seed(0),
                    0, 1, accelerated=accelerated)
        model.load_state_dict(initial)  # in place: the compiled forward keeps its graphs
        synchronize(device)
        began = time.perf_counter()
        train_epoch(model, data, optimizer(), opt_cfg, [], torch.Generator().manual_seed(1), 0, 1,
                    accelerated=accelerated)
        synchronize(device)
        return time.perf_counter() - began


def plain_pass(model: nn.Module, optimizer: torch.optim.Optimizer, loader, mean: torch.Tensor,
               std: torch.Tensor) -> None:
    """The standard loop: normalise, forward, cross_entropy, zero_grad, backward, step."""
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model((x.float() / 255 - mean) / std), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def plain_epoch(model: nn.Module, data: Dataset, batch_size: int) -> float:
    """Seconds of one epoch of the plain loop over a DataLoader, after a warm-up pass that is then undone."""
    device = next(model.parameters()).device
    opt_cfg = OmegaConf.structured(OptimConfig(batch_size=batch_size))
    mean, std = data.mean.view(1, -1, 1, 1), data.std.view(1, -1, 1, 1)

    def optimizer() -> torch.optim.Optimizer:  # the one the engine gets: the speed-up must measure the loop
        return build_optimizer([{"params": list(model.parameters())}], opt_cfg)

    initial = {k: v.clone() for k, v in model.state_dict().items()}
    warm = warm_up_head(data, batch_size).train
    plain_pass(model, optimizer(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(warm.x, warm.y),
                                                                batch_size=batch_size), mean, std)
    model.load_state_dict(initial)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data.train.x, data.train.y),
                                         batch_size=batch_size, shuffle=True)
    synchronize(device)
    began = time.perf_counter()
    plain_pass(model, optimizer(), loader, mean, std)
    synchronize(device)
    return time.perf_counter() - began


def summary_line(prunekit: dict[str, float], plain: dict[str, float], peak_gb: float) -> str:
    """The last line: ``vgg16_epoch_s=<a> resnet18_epoch_s=<b> speedup_vs_plain=<x>x peak_mem_gb=<m>``."""
    speedup = sum(plain.values()) / sum(prunekit.values())
    return (f"vgg16_epoch_s={prunekit['vgg16']:.3f} resnet18_epoch_s={prunekit['resnet18']:.3f} "
            f"speedup_vs_plain={speedup:.2f}x peak_mem_gb={peak_gb:.2f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000, help="random training images (CIFAR-10: 50,000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="bf16", choices=list(PRECISIONS), help="prunekit's side only")
    parser.add_argument("--no-channels-last", action="store_true", help="prunekit's side in the default layout")
    parser.add_argument("--no-compile", action="store_true", help="prunekit's side eager (a CPU compile takes minutes)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.samples < 1 or args.batch_size < 1:
        raise UserError(f"--samples={args.samples} and --batch-size={args.batch_size} must both be at least 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    acceleration = Acceleration(device.type, args.precision, channels_last=not args.no_channels_last,
                                compile=not args.no_compile, cudnn_benchmark=device.type == "cuda")
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU(s)"
    print(f"device {device} ({hardware}), torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s); "
          f"{args.samples:,} random 3x32x32 images on the device, batch {args.batch_size}; prunekit: "
          f"{args.precision}, channels_last {acceleration.channels_last}, compile {acceleration.compile}, "
          f"cudnn.benchmark {acceleration.cudnn_benchmark}; plain: fp32 eager, DataLoader", flush=True)
    data = random_images(args.samples, device, args.seed)
    prunekit, plain, peak = {}, {}, 0
    for name in MODELS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        prunekit[name] = prunekit_epoch(network(name, args.seed, device), data, args.batch_size, acceleration)
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
        plain[name] = plain_epoch(network(name, args.seed, device), data, args.batch_size)
        print(f"{name}: prunekit {prunekit[name]:.3f} s/epoch, plain {plain[name]:.3f} s/epoch, "
              f"{plain[name] / prunekit[name]:.2f}x", flush=True)
    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPU(s)", flush=True)
    print(summary_line(prunekit, plain, peak / 1e9), flush=True)
    return {"prunekit": prunekit, "plain": plain, "peak_mem_gb": peak / 1e9}


if __name__ == "__main__":
    run_script(main)
