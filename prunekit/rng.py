"""The global random number generators (Python, NumPy, torch on the CPU and on every CUDA device).

Data order and augmentation draw from their own per-epoch generators (pipeline.epoch_generator); what
remains on the global generators is whatever the model itself draws, such as dropout. Each stage starts
from a generator state fixed by (seed, stage), so a run gets the same result whether its dense model
came from the cache or was trained; a checkpoint captures the states, so a resumed stage continues
with the very numbers it would have drawn.

Any seed >= 0 is valid. Every generator is seeded through :func:`fold` or :func:`derive`, which keep a seed
inside what torch accepts (an unsigned 64-bit integer): numbers that fit are used unchanged, so every seed
that ran before this was added draws the same numbers as then.
"""
from __future__ import annotations

import random

import numpy as np
import torch


SEED_RANGE = 2**64  # torch.Generator.manual_seed takes [-2**63, 2**64); larger numbers overflow
STREAM_SPACING = 1_000_003  # a stream of a run is seed * STREAM_SPACING + offset, as prunekit always derived it


def fold(seed: int) -> int:
    """``seed`` as a generator seed: unchanged below 2**64, reduced modulo 2**64 above (no valid seed overflows)."""
    return seed % SEED_RANGE


def derive(seed: int, offset: int) -> int:
    """The seed of one stream of a run (``offset`` tells the streams apart): ``seed * 1_000_003 + offset``,
    the formula every stream has always used, folded into [0, 2**64) when it is larger."""
    return fold(seed * STREAM_SPACING + offset)


def seed_all(seed: int) -> None:
    """Seed every global generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(fold(seed))  # also seeds every CUDA device


def capture() -> dict:
    """The state of every global generator, as tensors and plain values (loadable with weights_only)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore(state: dict) -> None:
    """Put every global generator back into a state from :func:`capture`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
