"""The dense-model cache: a dense network is trained once per configuration and reused by every run.

The key hashes everything that determines the dense weights (dataset, model, dense training settings,
seed, device type and library versions). A file lock makes concurrent runs of a sweep wait for the
first one instead of training the same network twice; writes are atomic.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from prunekit.rundir import atomic_save


def dense_key(cfg: DictConfig, device: torch.device) -> str:
    """A short hash of everything the dense weights depend on."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("download")  # how the files arrived does not change them
    data.pop("root")  # the same dataset may sit in several places
    identity = {
        "data": data,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": cfg.seed,
        "device": device.type,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class DenseCache:
    """Files ``<cache_dir>/<key>.pt`` holding a dense state_dict and its evaluation."""

    def __init__(self, cache_dir: str, key: str):
        self.dir = Path(cache_dir).expanduser()
        self.path = self.dir / f"{key}.pt"
        self.key = key

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the key's lock: one process trains, the others wait and then read its result."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            yield

    def load(self, device: torch.device) -> dict | None:
        if not self.path.exists():
            return None
        return torch.load(self.path, map_location=device, weights_only=True)

    def store(self, entry: dict) -> None:
        atomic_save(entry, self.path)
