"""The global random number generators (Python, NumPy, torch on the CPU and on every CUDA device).

Data order and augmentation draw from their own per-epoch generators (pipeline.epoch_generator); what
remains on the global generators is whatever the model itself draws, such as dropout. Each stage starts
from a generator state fixed by (seed, stage), so a run gets the same result whether its dense model
came from the cache or was trained; a checkpoint captures the states, so a resumed stage continues
with the very numbers it would have drawn.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seed every global generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


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
