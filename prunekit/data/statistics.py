"""What a dataset's splits hold, in numbers: the statistics that normalise them and the fingerprint that tells
them apart from other data."""
from __future__ import annotations

import hashlib
import json

import torch

SPLITS = ("train", "val", "test")
STATS_CHUNK = 1024  # samples per step when computing mean/std, to bound float64 memory on large sets


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (float32) over every dimension but 1: per channel for images, per feature for tables.

    uint8 data is measured in units of 0..1. Sums run in float64 over chunks, so a large set needs neither
    a float copy of itself nor suffers cancellation. A constant channel gets std 1, not a division by zero.
    """
    unit = 1 / 255 if x.dtype == torch.uint8 else 1.0
    dims = [d for d in range(x.dim()) if d != 1]
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for chunk in x.split(STATS_CHUNK):
        values = chunk.to(torch.float64) * unit
        total += values.sum(dims)
        squares += values.square().sum(dims)
    count = max(x.numel() // x.shape[1], 1)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.float(), std.float()


def fingerprint(dataset) -> str:
    """Of an in-memory :class:`prunekit.data.dataset.Dataset`: 16 hex digits of a sha256 over the train, val and test tensors (bytes, shapes, dtypes), the number of
    classes and the kept classes: equal only for the same samples in the same splits with the same labels."""
    digest = hashlib.sha256(json.dumps([dataset.num_classes, dataset.classes]).encode())
    for name in SPLITS:
        for tensor in (dataset.split(name).x, dataset.split(name).y):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name} {data.dtype} {tuple(data.shape)};".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]
