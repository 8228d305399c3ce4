"""Every checkpoint prunekit writes or reads, with one key scheme and one safe loader.

The kinds (file names in DESIGN.md section 4):

    last         checkpoints/last.pt, where a run stands and what rebuilds its state (``resume=true``)
    dense        checkpoints/dense.pt, the dense network: a bare state_dict, so that ``model.weights`` and
                 any torch tool read it; a user's own weights file is of this kind too
    dense_cache  <cache_dir>/<key>.pt, a cached dense network and its evaluation (prunekit/cache.py)
    pruned       checkpoints/pruned.pt, the final network in its original shapes (pruned weights zero)
    compact      checkpoints/compact.pt, the physically smaller network

Every kind but dense is a dict with ``kind`` and ``format`` (:data:`FORMAT`) and the keys of :data:`KEYS`;
a thing has the same key in every kind: ``model`` a network's state_dict, ``spec`` the
:class:`~prunekit.state.ModelSpec` that rebuilds it (as a dict), ``config`` the run's config, ``metrics``
an evaluation. Nothing is pickled but tensors and plain values: a file that names code is refused, and a
file of another kind or format is refused in one line naming it (the dense cache takes that as a miss).
"""
from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.errors import UserError, file_errors, reason
from prunekit.rundir import atomic_write_bytes

FORMAT = 1  # of the key scheme: raise it when a kind's keys change, so that older files are refused
KEYS = {
    "last": ("stage", "epoch", "done", "state", "optimizer", "scaler", "config", "log_length", "rng"),
    "dense_cache": ("model", "metrics"),
    "rewind_cache": ("model", "step"),  # the weights after that many steps of a cached dense training
    "pruned": ("model", "spec", "config", "input_shape", "num_classes"),
    "compact": ("model", "spec", "dataset"),
}
KINDS = ("dense", *KEYS)


class Spec(Protocol):
    """What rebuilds a network (:class:`prunekit.state.ModelSpec`); a checkpoint stores its dict."""

    input_shape: tuple[int, ...]
    num_classes: int

    def to_dict(self) -> dict: ...


class CheckpointError(UserError):
    """A file that is not a checkpoint of the kind asked for; ``why`` says what it is instead."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} {why}")
        self.path, self.why = path, why


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save, atomically (:func:`prunekit.rundir.atomic_write_bytes`)."""
    # Serialised in memory first: torch's zip writer reports a failed file write (a full disk, ulimit -f) as
    # a RuntimeError, which would hide the OSError that names the cause.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with weights_only=True (tensors and plain values: a file that names other code is refused),
    without the warnings torch prints first about old or foreign formats: the caller says what is wrong. A file
    that cannot be opened (permissions, a missing file) is a UserError naming it, never "damaged"."""
    with file_errors(path, "read"):
        handle = open(path, "rb")
    with handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(handle, map_location=map_location, weights_only=True)


def _load(path: Path, map_location: Any, hint: str = "") -> Any:
    """:func:`load_checkpoint`, with whatever keeps the file from loading said as a :class:`CheckpointError`
    (``hint``: what the user should give instead, added to the line)."""
    try:
        return load_checkpoint(path, map_location)
    except UserError:  # the file cannot be opened: said as it is
        raise
    except Exception as error:  # noqa: BLE001 - truncated, empty or foreign: the file cannot be used
        if isinstance(error, OSError):
            why = f"cannot be read ({reason(error)})"
        elif not zipfile.is_zipfile(path):
            why = "is not a file written by torch.save"
        elif isinstance(error, pickle.UnpicklingError):
            why = f"holds more than tensors and plain values ({reason(error)})"
        else:
            why = f"cannot be loaded ({reason(error)})"
        raise CheckpointError(path, f"{why}; {hint}" if hint else why) from error


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def save(path: Path, kind: str, **fields: Any) -> None:
    """Write a checkpoint of ``kind`` (not dense) holding ``fields``, exactly the keys :data:`KEYS` lists."""
    if set(fields) != set(KEYS[kind]):
        raise ValueError(f"a {kind} checkpoint holds {KEYS[kind]}, not {tuple(fields)}")
    atomic_save({"kind": kind, "format": FORMAT, **fields}, path)


def read(path: Path, kind: str, map_location: Any = "cpu") -> dict:
    """The record of the checkpoint ``path`` of ``kind`` (not dense); a file that cannot be loaded, or that is
    another kind, another format or lacks a key, is a :class:`CheckpointError` naming it."""
    record = _load(path, map_location)
    found = record.get("kind") if isinstance(record, dict) else None
    if found != kind:
        if found in KINDS:
            other = f"it is a {found} checkpoint"
        elif _is_state_dict(record):
            other = "it is a bare state_dict, such as a dense.pt"
        elif isinstance(record, dict) and "format" in record:  # compact.pt before the one key scheme
            other = f"its format {record['format']} is another prunekit version's"
        else:
            other = "it has no prunekit kind record"
        raise CheckpointError(path, f"is not a prunekit {kind} checkpoint ({other})")
    if record.get("format") != FORMAT:
        raise CheckpointError(path, f"is a {kind} checkpoint of format {record.get('format')}, not {FORMAT} (written "
                                    "by another prunekit version)")
    missing = [key for key in KEYS[kind] if key not in record]
    if missing:
        raise CheckpointError(path, f"is a {kind} checkpoint without {', '.join(missing)}")
    return record


def save_dense(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """Write dense.pt: the dense network's state_dict, bare (see the module's docstring)."""
    atomic_save(weights, path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict in ``path`` (a dense.pt, or a user's own weights file), as names -> tensors."""
    hint = "give a state_dict such as a run's checkpoints/dense.pt (of a whole network, save its state_dict())"
    state = _load(path, "cpu", hint)
    if not _is_state_dict(state):
        raise CheckpointError(path, f"is not a plain state_dict (names -> tensors); {hint}")
    return state


def save_pruned(path: Path, model: nn.Module, spec: Spec, config: dict) -> None:
    """Write pruned.pt: the final network in its original shapes, with the run's config."""
    save(path, "pruned", model=model.state_dict(), spec=spec.to_dict(), config=config,
         input_shape=list(spec.input_shape), num_classes=spec.num_classes)


def save_compact(path: Path, model: nn.Module, spec: Spec, dataset: str) -> None:
    """Write compact.pt: the compact network's state_dict, its spec and the dataset it was trained on."""
    save(path, "compact", model=model.state_dict(), spec=spec.to_dict(), dataset=dataset)


def read_compact(path: Path, expect: dict | None = None, map_location: Any = "cpu") -> dict:
    """The record of compact.pt; ``expect`` may name what it must belong to, ``{"dataset": name, "model":
    model config}``: a file of another model or dataset is a :class:`CheckpointError`."""
    record = read(path, "compact", map_location)
    for key, wanted in (expect or {}).items():
        found = record["dataset"] if key == "dataset" else record["spec"]["model"]
        if key == "model":  # a DictConfig or a dict with interpolations compares as the plain dict it stands for
            wanted = OmegaConf.to_container(OmegaConf.create(wanted), resolve=True)
        if found != wanted:
            raise CheckpointError(path, f"holds a network for {key} {found}, not {wanted}")
    return record
