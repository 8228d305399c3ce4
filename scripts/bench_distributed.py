#!/usr/bin/env python
"""Benchmark several ranks: the training step on 1 and N ranks, and the streaming loader against the in-memory path.

    python scripts/bench_distributed.py                       # CPU: 1 vs 2 gloo ranks, LeNet-300-100
    python scripts/bench_distributed.py --device cuda --ranks 1,2,4 --streaming

Part 1, the step: prunekit's own training step (``prunekit.engine.train_step`` through
``prunekit.distributed.parallel.replicated``, the DDP every training stage uses, with SGD from ``build_optimizer``)
on the same random global batch of ``--batch`` samples, once in one process without a process group (the
reference) and once on each rank count of ``--ranks`` (gloo on the CPU, nccl on CUDA; each rank its share of the
batch, and on the CPU the machine's cores divided among the ranks, as ``distributed.nproc`` divides them). After
``--warmup`` steps, each rank times ``--steps`` steps (a barrier before each, so all ranks start it together); the
step time of a rank count is the median over steps of the slowest rank's. On a CPU the ranks share the same cores:
the figure shows the cost of the collectives and of halving the batch per process, not a speed-up. On several GPUs
each rank has its own device and the step should fall with the ranks.

Part 2 (``--streaming``), the loaders: one epoch of training batches (shuffled, ImageNet's augmentation) delivered
on the device, from a folder of ``--images`` JPEGs per class in ImageNet's layout written into a temporary
folder: the in-memory path (decoded once, then ``index_select`` on the device) against the streaming path (a
DataLoader with ``--workers`` workers decoding every epoch). Images per second of each, and their ratio; the
in-memory figure excludes its one-time decoding, which is printed beside it.

The last line is exactly ``step_ms_1rank=<a> step_ms_<n>ranks=<b> ratio_<n>ranks=<b/a>x ...`` (one pair per rank
count), then, with ``--streaming``, `` streaming_images_per_s=<s> in_memory_images_per_s=<m>``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from prunekit.config import OptimConfig
from prunekit.data import load_dataset
from prunekit.distributed import world
from prunekit.distributed.parallel import replicated
from prunekit.engine import build_optimizer, train_step
from prunekit.errors import UserError, run_script
from prunekit.latency import synchronize
from prunekit.models import build_model
from prunekit.models.mlp import MLPConfig
from prunekit.pipeline import resolve_device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--ranks", default="2", help="rank counts to compare with one process, e.g. 2 or 2,4")
    parser.add_argument("--batch", type=int, default=256, help="the global batch (split among the ranks)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--streaming", action="store_true", help="also time the streaming loader (part 2)")
    parser.add_argument("--images", type=int, default=64, help="part 2: JPEGs per class (10 classes)")
    parser.add_argument("--workers", type=int, default=4, help="part 2: the streaming DataLoader's workers")
    return parser.parse_args(argv)


def _model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(OmegaConf.structured(MLPConfig(name="mlp")), (1, 28, 28), 10).to(device)


def time_steps(device: torch.device, batch: int, steps: int, warmup: int) -> list[float]:
    """Seconds of each timed step of this process (a rank, or the one process of the reference)."""
    model = _model(device)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, 1, 28, 28, generator=generator), torch.randint(0, 10, (batch,), generator=generator)
    share = world.shard()
    if share is not None:  # this rank's positions of the global batch, as the stages take them
        positions = share.positions(0, batch)
        x, y = x[positions], y[positions]
    x, y = x.to(device), y.to(device)
    cfg = OmegaConf.structured(OptimConfig(batch_size=batch, lr_schedule="constant"))
    optimizer = build_optimizer([{"params": list(model.parameters())}], cfg)
    seconds = []
    with replicated(model, [], sync_bn=False) as trained:
        for step in range(warmup + steps):
            if world.size() > 1:
                dist.barrier()
            began = time.perf_counter()
            train_step(trained, optimizer, x, y, [], step + 1, share=len(y) * world.size() / batch)
            synchronize(device)
            if step >= warmup:
                seconds.append(time.perf_counter() - began)
    return seconds


def _rank(rank: int, ranks: int, folder: str, device_type: str, args: argparse.Namespace) -> None:
    """One rank of part 1: join the group, time the steps, leave the slowest-rank figures to rank 0."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks))
    if device_type == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", init_method=f"file://{folder}/group",
                            rank=rank, world_size=ranks)
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    seconds = time_steps(device, args.batch, args.steps, args.warmup)
    slowest = [max(step) for step in zip(*world.gather(seconds))]
    if rank == 0:
        torch.save(slowest, Path(folder) / "seconds.pt")
    dist.barrier()  # no rank leaves while another still talks to it
    dist.destroy_process_group()


def step_ms(ranks: int, device: torch.device, args: argparse.Namespace) -> float:
    """Median step time in milliseconds on ``ranks`` ranks (1: one process, no process group)."""
    if ranks == 1:
        return 1e3 * statistics.median(time_steps(device, args.batch, args.steps, args.warmup))
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_rank, args=(ranks, folder, device.type, args), nprocs=ranks, start_method="spawn")
        return 1e3 * statistics.median(torch.load(Path(folder) / "seconds.pt", weights_only=True))


def write_folder(root: Path, per_class: int, classes: int = 10) -> None:
    """ImageNet's layout under ``root``: ``per_class`` random 500x375 JPEGs per class in train, a quarter in val."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", max(1, per_class // 4))):
        for label in range(classes):
            folder = root / "imagenet" / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = generator.integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.JPEG", quality=90)


def images_per_second(streaming: bool, root: Path, device: torch.device,
                      args: argparse.Namespace) -> tuple[float, float]:
    """(images per second of one shuffled, augmented training pass delivered on ``device``, seconds to load the
    dataset first) for one path."""
    from prunekit.data.registry import DATASETS

    values = {"name": "imagenet", "root": str(root), "val_fraction": 0.0, "streaming": streaming,
              "workers": args.workers, "augment": {"hflip": True, "resized_crop": True, "crop_padding": 0}}
    cfg = OmegaConf.merge(OmegaConf.structured(DATASETS.get("imagenet").config), values)
    began = time.perf_counter()
    data = load_dataset(cfg, device)
    synchronize(device)
    loaded, began = time.perf_counter() - began, time.perf_counter()
    seen = 0
    order = torch.Generator().manual_seed(0)
    for x, _ in data.batches("train", args.batch, shuffle=True, augment=True, generator=order):
        seen += len(x)
    synchronize(device)
    return seen / (time.perf_counter() - began), loaded


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    counts = sorted({int(word) for word in args.ranks.split(",")} - {1})
    if device.type == "cuda" and counts and counts[-1] > torch.cuda.device_count():
        raise UserError(f"--ranks {args.ranks} but this machine has {torch.cuda.device_count()} CUDA devices")
    figures = {"step_ms_1rank": step_ms(1, device, args)}
    for ranks in counts:
        figures[f"step_ms_{ranks}ranks"] = step_ms(ranks, device, args)
        figures[f"ratio_{ranks}ranks"] = figures[f"step_ms_{ranks}ranks"] / figures["step_ms_1rank"]
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU core(s)"
    print(f"LeNet-300-100 training step, global batch {args.batch}, {device} ({hardware}); the ranks share the "
          f"machine's cores on the CPU; load average (1 min) {os.getloadavg()[0]:.2f}", flush=True)
    for ranks in [1, *counts]:
        line = f"  {ranks} rank(s): {figures[f'step_ms_{ranks}rank' + ('' if ranks == 1 else 's')]:.2f} ms per step"
        print(line + ("" if ranks == 1 else f" ({figures[f'ratio_{ranks}ranks']:.2f}x the one process)"), flush=True)
    if args.streaming:
        with tempfile.TemporaryDirectory() as folder:
            write_folder(Path(folder), args.images)
            memory, decoded = images_per_second(False, Path(folder), device, args)
            figures["streaming_images_per_s"], _ = images_per_second(True, Path(folder), device, args)
            figures["in_memory_images_per_s"] = memory
        print(f"one training pass over {10 * args.images} JPEGs (500x375 -> 224, RandomResizedCrop/crop and flip), "
              f"batch {args.batch}: streaming with {args.workers} workers {figures['streaming_images_per_s']:.0f} "
              f"images/s, in memory {memory:.0f} images/s (after decoding them once in {decoded:.1f} s)", flush=True)
    line = " ".join(f"{key}={value:.2f}" + ("x" if key.startswith("ratio") else "") for key, value in figures.items())
    print(line, flush=True)
    return figures


if __name__ == "__main__":
    run_script(main)
