"""``prunekit explain RUN_DIR``: redraw every figure a run draws with figures=true (whatever its model and method:
the figures registered in prunekit/explain/registry.py) from its pruned checkpoint, and record their measures."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.artifacts import load_compact
from prunekit import checkpoints
from prunekit.data import load_dataset
from prunekit.errors import UserError, reason
from prunekit.explain.registry import FinishedRun, draw_figures, measures
from prunekit.rundir import SUMMARY, RunDir, atomic_write_json
from prunekit.state import ModelSpec


def load_pruned(run_dir: RunDir) -> tuple[nn.Module, dict]:
    """The run's final (masked) model on the CPU, and its checkpoint record."""
    path = run_dir.checkpoint("pruned")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; give the directory of a finished `prunekit train` run")
    record = checkpoints.read(path, "pruned")  # another kind, a damaged or foreign file: one line naming it
    try:
        spec = ModelSpec(record["config"]["model"], tuple(record["input_shape"]), record["num_classes"])
        model = spec.build(torch.device("cpu"))  # registers the mask buffers the checkpoint carries
        model.load_state_dict(record["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} is not a prunekit checkpoint of this model ({reason(err)})") from err
    return model, record


def explain_run(path: Path) -> dict:
    """Re-draw figures/ of a finished run and update its summary.json with what its figures and measures found."""
    run_dir = RunDir(path)
    model, record = load_pruned(run_dir)
    if run_dir.checkpoint("compact").is_file():  # the run's compact network must be this run's
        load_compact(run_dir.checkpoint("compact"),
                     expect={"dataset": record["config"]["data"]["name"], "model": record["config"]["model"]})
    cfg = OmegaConf.create(record["config"])
    # The data is loaded only when a figure reads it (reference samples, input clusters), as the run loaded it.
    finished = FinishedRun(model, tuple(record["input_shape"]), cfg, run_dir,
                           lambda: load_dataset(cfg.data, torch.device("cpu"), cfg.seed))
    run_dir.make_figures()
    entries = {**measures(finished), **draw_figures(finished, run_dir.figures)}
    summary_path = run_dir.root / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    atomic_write_json({**summary, **entries}, summary_path)
    drawn = sorted(p.name for p in run_dir.figures.glob("*"))
    print(f"wrote {', '.join(drawn)} into {run_dir.figures}" if drawn else
          f"no figure applies to the run in {run_dir.root} (model={cfg.model.name}, method={cfg.method.name})")
    return entries
