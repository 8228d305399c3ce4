"""The networks a finished run leaves for users, rebuilt from their checkpoints (prunekit/checkpoints.py)
on a fresh model from the spec they hold: no pickled classes."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunekit.checkpoints import CheckpointError, read_compact
from prunekit.errors import reason
from prunekit.state import ModelSpec


def load_compact(path: Path, expect: dict | None = None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The compact network in compact.pt (eval mode) and the file's record.

    ``expect`` may name what the file must belong to: ``{"dataset": name, "model": model config}``; a
    file of another model or dataset, or one that is not a compact.pt, raises a one-line UserError.
    """
    record = read_compact(path, expect, device)
    try:
        model = ModelSpec.from_dict(record["spec"]).build(torch.device(device))
        model.load_state_dict(record["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"does not rebuild into its own spec ({reason(err)})") from err
    return model.eval(), record
