"""``prunekit explain RUN_DIR``: rebuild a run's interpretability figures from its pruned checkpoint."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import nn

from prunekit.artifacts import load_compact
from prunekit.data.source import reason
from prunekit.errors import UserError
from prunekit.explain import explain_mlp
from prunekit.metrics import is_mlp
from prunekit.rundir import SUMMARY, RunDir, atomic_write_json, load_checkpoint
from prunekit.state import ModelSpec


def load_pruned(run_dir: RunDir) -> tuple[nn.Module, dict]:
    """The run's final (masked) model on the CPU, and its checkpoint record."""
    path = run_dir.checkpoint("pruned")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; give the directory of a finished `prunekit train` run")
    try:
        record = load_checkpoint(path)
        spec = ModelSpec(record["config"]["model"], tuple(record["input_shape"]), record["num_classes"])
        model = spec.build(torch.device("cpu"))  # registers the mask buffers the checkpoint carries
        model.load_state_dict(record["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise UserError(f"{path} is not a prunekit checkpoint of this model ({reason(err)})") from err
    return model, record


def explain_run(path: Path) -> dict:
    """Re-draw figures/ of a finished run and update its summary.json with what they measured."""
    run_dir = RunDir(path)
    model, record = load_pruned(run_dir)
    if run_dir.checkpoint("compact").is_file():  # the run's compact network must be this run's
        load_compact(run_dir.checkpoint("compact"),
                     expect={"dataset": record["config"]["data"]["name"], "model": record["config"]["model"]})
    if not is_mlp(model):
        raise UserError(f"explain draws MLPs only; the run in {path} pruned a {record['config']['model']['name']}")
    entries = explain_mlp(model, record["input_shape"], run_dir.figures)
    summary_path = run_dir.root / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    atomic_write_json({**summary, **entries}, summary_path)
    print(f"wrote {', '.join(sorted(p.name for p in run_dir.figures.glob('*')))} into {run_dir.figures}")
    return entries
