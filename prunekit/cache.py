"""The dense-model cache: a dense network is trained once per configuration and reused by every run.

The key hashes everything that determines the dense weights (the data loaded, by its fingerprint; the data,
model and dense training settings; seed, device type and library versions). Where the data lies is not
part of it: a copy of the same files elsewhere hits, other files under the same path miss. A file lock
makes concurrent runs of a sweep wait for the first one instead of training the same network twice;
writes are atomic. An entry that cannot be read, is of another checkpoint kind or format
(prunekit/checkpoints.py), or holds something else than a dense model of this configuration, is set aside
(renamed, never deleted) with a warning, and the network is trained again: one damaged file must not fail
every later run of its configuration.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from prunekit import checkpoints
from prunekit.checkpoints import CheckpointError
from prunekit.config import TrainConfig
from prunekit.distributed import world
from prunekit.errors import file_errors, warn
from prunekit.models import weights

DENSE_CACHE = "dense_cache"  # the checkpoint kind of an entry
REWIND_CACHE = "rewind_cache"  # of an entry holding the weights at a rewind point (prunekit/stages/rewind.py)

# How the device computes (prunekit/acceleration.py): each option with its schema default.
DEVICE_OPTIONS = {field.name: field.default for field in dataclasses.fields(TrainConfig)
                  if field.name in ("precision", "channels_last", "compile", "deterministic")}


def dense_key(cfg: DictConfig, device: torch.device, data_fingerprint: str) -> str:
    """A short hash of everything the dense weights depend on; ``data_fingerprint`` is the loaded dataset's
    (:attr:`prunekit.data.Dataset.fingerprint`), which stands for the files' contents."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("download")  # how the files arrived does not change them
    data.pop("root")  # where they lie neither: the fingerprint tells their contents apart
    data.pop("workers", None)  # nor how many processes read them (the streaming path)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if model.get("weights") is not None:  # the file's content and classes count, not where it lies
        model["weights"] = weights.identity(model["weights"])
    identity = {
        "data": data,
        "data_fingerprint": data_fingerprint,
        "model": model,
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": cfg.seed,
        "device": device.type,
        "torch": torch.__version__,
    }
    # How the device computed matters too (bf16 trains other weights than fp32); only options away from their
    # defaults enter the key, so entries cached before the options existed stay valid.
    for option, default in DEVICE_OPTIONS.items():
        if cfg.get(option, default) != default:
            identity[option] = cfg[option]
    if world.size() > 1:  # the same global batches, but sums in another order (and BatchNorm per rank or synced)
        identity["ranks"], identity["sync_bn"] = world.size(), cfg.distributed.sync_bn
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class DenseCache:
    """Files ``<cache_dir>/<key>.pt`` holding a dense state_dict and its evaluation (or, of ``kind`` rewind_cache,
    the weights at a step of that training and the step)."""

    def __init__(self, cache_dir: str, key: str, kind: str = DENSE_CACHE):
        self.dir = Path(cache_dir).expanduser()
        self.path = self.dir / f"{key}.pt"
        self.key, self.kind = key, kind

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the key's lock: one process trains, the others wait and then read its result. A folder that
        cannot be written is named in one line (cache_dir=...)."""
        with file_errors(f"cache_dir={self.dir}", "write"):
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path) + ".lock")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def load(self, device: torch.device) -> dict | None:
        """The cached entry ({"model": state_dict, "metrics": {...}}), or None when there is none or it is
        unreadable or of another kind or format (then it has been set aside)."""
        if not self.path.exists():
            return None
        try:
            entry = checkpoints.read(self.path, self.kind, device)
        except CheckpointError as err:
            self.set_aside(err.why)
            return None
        except Exception as err:  # noqa: BLE001 - whatever the damage, the cure is to train again
            self.set_aside(f"cannot be read ({type(err).__name__})")
            return None
        if not isinstance(entry["model"], dict) or not isinstance(entry.get("metrics", {}), dict):
            self.set_aside("does not hold a dense model and its metrics")
            return None
        return entry

    def set_aside(self, why: str) -> None:
        """Rename a bad entry out of the way (kept for inspection) and say so in one line."""
        aside = self.path.with_name(f"{self.path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        self.path.replace(aside)
        warn(f"dense cache entry {self.path} {why}; moved it to {aside.name} and training the dense model again")

    def store(self, entry: dict) -> None:
        """Write ``entry`` ({"model": state_dict, "metrics": {...}}) as this key's entry."""
        checkpoints.save(self.path, self.kind, **entry)
