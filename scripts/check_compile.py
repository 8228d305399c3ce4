#!/usr/bin/env python
"""Check ``compile=true`` with torch's real compiler (inductor): pruned weights stay exactly zero, and checkpoints and
``prunekit explain`` see the module's own state_dict keys.

    python scripts/check_compile.py              # about 1.5 minutes on a 2-core CPU (cold compiles)
    python scripts/check_compile.py --device cuda

The test suite makes the same engine-level check through dynamo and AOTAutograd without inductor
(tests/test_acceleration.py): a cold inductor compile costs 20-40 s per network here, too much for the suite.

1. engine: a small CNN (bf16, channels_last) and an MLP (fp32), half of every layer's weights masked, trained a few
   epochs of random data through ``engine.train_epoch`` with a compiled forward (full and partial batches);
2. a run: ``prunekit train compile=true`` on digits (dense, prune, compact, finetune), then ``prunekit explain``
   on its directory, and its pruned.pt loaded into a freshly built network; then the same for ``method=gumbel``
   (gates sampled outside the compiled graph, tau annealed between steps).

Prints one line per check and, last, ``compile_check=ok``; exits 1 at the first failure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench_gpu import random_images
from prunekit.acceleration import Acceleration
from prunekit.cli import main as prunekit
from prunekit.config import OptimConfig
from prunekit.engine import build_optimizer, train_epoch
from prunekit.errors import run_script
from prunekit.explain.command import load_pruned
from prunekit.models import build_model
from prunekit.pipeline import resolve_device
from prunekit.pruning.masks import MaskSet
from prunekit.rundir import RunDir

NETWORKS = {
    "cnn": ({"name": "cnn", "blocks": [[8], [8]], "hidden": 16, "weights": None}, "bf16", True),
    "mlp": ({"name": "mlp", "hidden": [32, 16], "dropout": 0.0, "weights": None}, "fp32", False),
}
SHAPE, CLASSES, SAMPLES, BATCH = (3, 8, 8), 4, 40, 16  # 40 samples: batches of 16, 16 and 8


def check_engine(name: str, device: torch.device, epochs: int) -> str:
    """Train ``name`` compiled with half its weights masked; the line to print (a failure ends the script, exit 1)."""
    cfg, precision, channels_last = NETWORKS[name]
    torch.manual_seed(0)
    model = build_model(OmegaConf.create(cfg), SHAPE, CLASSES).to(device)
    masks = MaskSet(model)
    generator = torch.Generator().manual_seed(1)
    masks.set_groups("weight", {n: (torch.rand(layer.weight.shape, generator=generator) > 0.5).to(device)
                                for n, layer in masks.layers.items()})
    keys, before = list(model.state_dict()), [p.detach().clone() for p in model.parameters()]
    accelerated = Acceleration(device.type, precision, channels_last, compile=True).bind(model)
    opt_cfg = OmegaConf.structured(OptimConfig(batch_size=BATCH, lr_schedule="constant"))
    optimizer = build_optimizer([{"params": list(model.parameters())}], opt_cfg, accelerated.fused_optimizer)
    data = random_images(SAMPLES, device, 0, SHAPE, CLASSES)
    for epoch in range(epochs):
        train_epoch(model, data, optimizer, opt_cfg, [masks], torch.Generator().manual_seed(epoch), 0, 1,
                    accelerated=accelerated)
    leaked = sum(int((layer.weight[~layer.weight_mask] != 0).sum()) for layer in masks.layers.values())
    if leaked or list(model.state_dict()) != keys:
        sys.exit(f"{name}: {leaked} pruned weights are non-zero after compiled steps, or the state_dict keys "
                        "changed")
    if all(torch.equal(a, b) for a, b in zip(before, model.parameters())):
        sys.exit(f"{name}: compiled steps did not train the network")
    return f"engine {name} ({precision}, channels_last {channels_last}): {epochs} compiled epochs, pruned weights 0"


def call(args: list[str]) -> int:
    """``prunekit ARGS`` in this process; its exit code (Hydra and a failed run end with SystemExit)."""
    try:
        return prunekit(args)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1


RUNS = {  # what each checked run adds to ``prunekit train compile=true`` on digits
    "magnitude": ["train.epochs=2", "prune.epochs=2", "finetune.epochs=1"],
    "gumbel": ["method=gumbel", "method.sparsity=0.9", "method.tau_final=0.5", "prune.epochs=2", "finetune.epochs=1"],
}


def check_run(device: torch.device, method: str) -> str:
    """``prunekit train compile=true`` with ``method`` then ``prunekit explain``, in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="check_compile_") as scratch:
        run = Path(scratch) / "run"
        code = call(["train", "compile=true", f"device={device.type}", "model.hidden=[32,16]", *RUNS[method],
                     "latency=false", f"cache_dir={scratch}/cache", f"hydra.run.dir={run}"])
        if code != 0 or call(["explain", str(run)]) != 0:
            sys.exit(f"prunekit train compile=true ({method}) or prunekit explain failed (exit {code})")
        model, _ = load_pruned(RunDir(run))  # a fresh network: strict load_state_dict of pruned.pt
        dead = sum(int((m.weight[~m.weight_mask] != 0).sum()) for m in MaskSet(model).layers.values())
        if dead:
            sys.exit(f"pruned.pt of a compiled run holds {dead} non-zero pruned weights")
    return f"run: prunekit train compile=true ({method}), pruned.pt reloaded, prunekit explain drew its figures"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="compiled training epochs per network")
    parser.add_argument("--skip-run", action="store_true", help="only the engine check (no prunekit train)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    for name in NETWORKS:
        print(check_engine(name, device, args.epochs), flush=True)
    if not args.skip_run:
        for method in RUNS:
            print(check_run(device, method), flush=True)
    print("compile_check=ok", flush=True)


if __name__ == "__main__":
    run_script(main)
