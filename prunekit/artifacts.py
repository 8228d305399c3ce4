"""The checkpoints a finished run leaves for users: pruned.pt (the final network in its original shapes,
pruned weights zero, masks as buffers) and compact.pt (the physically smaller network). Both hold a
state_dict and the spec that rebuilds the network on a fresh model (prunekit/state.py): no pickled classes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.data.source import reason
from prunekit.errors import UserError
from prunekit.rundir import atomic_save, load_checkpoint
from prunekit.state import ModelSpec

COMPACT_FORMAT = "prunekit-compact-1"


def save_compact(path: Path, model: nn.Module, spec: ModelSpec, dataset: str) -> None:
    """Write compact.pt: the compact network's state_dict, its spec and the dataset it was trained on."""
    atomic_save({"format": COMPACT_FORMAT, "dataset": dataset, "spec": spec.to_dict(),
                 "state_dict": model.state_dict()}, path)


def load_compact(path: Path, expect: dict | None = None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The compact network in compact.pt (eval mode) and the file's record.

    ``expect`` may name what the file must belong to: ``{"dataset": name, "model": model config}``; a
    file of another model or dataset, or one that is not a compact.pt, raises a one-line UserError.
    """
    try:
        record = load_checkpoint(path, device)
    except UserError:  # the file cannot be opened: said as it is
        raise
    except Exception as err:  # noqa: BLE001 - whatever the damage, the file cannot be used
        raise UserError(f"{path} cannot be read as a prunekit compact.pt ({reason(err)})") from err
    if not isinstance(record, dict) or record.get("format") != COMPACT_FORMAT:
        raise UserError(f"{path} is not a prunekit compact.pt (no '{COMPACT_FORMAT}' record)")
    for key, wanted in (expect or {}).items():
        found = record["dataset"] if key == "dataset" else record["spec"]["model"]
        if key == "model":
            wanted = OmegaConf.to_container(OmegaConf.create(wanted), resolve=True)
        if found != wanted:
            raise UserError(f"{path} holds a network for {key} {found}, not {wanted}")
    spec = ModelSpec.from_dict(record["spec"])
    try:
        model = spec.build(torch.device(device))
        model.load_state_dict(record["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} does not rebuild into its own spec ({reason(err)})") from err
    return model.eval(), record


def save_pruned(path: Path, model: nn.Module, spec: ModelSpec, config: dict) -> None:
    """Write pruned.pt: the final network in its original shapes, with the run's config."""
    atomic_save({"model": model.state_dict(), "config": config, "input_shape": list(spec.input_shape),
                 "num_classes": spec.num_classes, "spec": spec.to_dict()}, path)
