#!/usr/bin/env python
"""Record, or compare with a record, what one short run of every method gives on digits.

    python scripts/method_results.py --write scripts/method_results.json   # before a refactoring
    python scripts/method_results.py --check scripts/method_results.json   # after it: the same numbers?

A refactoring that moves code without changing what it computes must leave these numbers exactly as they
were: every method (and the criteria lrp, taylor and gradient on a CNN too) runs once on the bundled digits
with seed 0, a short budget and one torch thread, as a real ``prunekit train`` in a subprocess, and the
numbers of its summary.json that a method decides (accuracy, loss, densities, parameter and FLOP counts,
modularity, what a method adds) are kept. Timings, latencies and paths are left out: they differ run to run.

Floating-point results are only comparable on one kind of machine with one torch version (the record holds
both); compare on the machine that wrote the record, or write a new one there first from the old code.
The last line printed is exactly ``method_results=same`` or ``method_results=differ(<n>)``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

BUDGET = ["train.epochs=3", "prune.epochs=3", "finetune.epochs=2", "seed=0", "latency=false", "figures=false"]
RUNS = {  # name -> the overrides of its run (after BUDGET)
    "magnitude": ["method=magnitude"],
    "magnitude_unit": ["method=magnitude", "method.granularity=unit", "method.sparsity=0.5"],
    "random": ["method=random"],
    "taylor": ["method=taylor"],
    "gradient": ["method=gradient"],
    "lrp": ["method=lrp"],
    "lrp_cnn": ["method=lrp", "model=cnn"],
    "taylor_cnn": ["method=taylor", "model=cnn"],
    "gumbel": ["method=gumbel"],
    "inputprune": ["method=inputprune"],
    "crespr": ["method=crespr", "method.criterion=obd"],
}
LEFT_OUT = ("seconds", "latency", "device", "dense_cache_hit")  # keys (and key prefixes) that vary run to run


def run(name: str, overrides: list[str], scratch: Path) -> dict:
    """The kept numbers of one run's summary.json."""
    env = {**os.environ, "PRUNEKIT_CACHE": str(scratch / "cache"), "OMP_NUM_THREADS": "1"}
    run_dir = scratch / name
    command = [sys.executable, "-m", "prunekit", "train", *BUDGET, *overrides, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: prunekit train exited {done.returncode}: {done.stderr.strip()[-500:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {key: value for key, value in summary.items() if not key.startswith(LEFT_OUT)}


def differences(old, new, where: str = "") -> list[str]:
    """Every place where ``new`` is not exactly ``old`` (nested dicts and lists walked)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new))
                for line in (differences(old.get(key), new.get(key), f"{where}.{key}") if key in old and key in new
                             else [f"{where}.{key}: only in the {'record' if key in old else 'new run'}"])]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, metavar="FILE", help="record the numbers in FILE")
    action.add_argument("--check", type=Path, metavar="FILE", help="compare the numbers with FILE")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="these runs only")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    with tempfile.TemporaryDirectory() as scratch:
        results = {name: run(name, RUNS[name], Path(scratch)) for name in names}
    record = {"torch": torch.__version__, "machine": platform.machine(), "budget": BUDGET, "runs": results}
    if args.write:
        args.write.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(results)} runs into {args.write}")
        return 0
    saved = json.loads(args.check.read_text())
    if (saved["torch"], saved["machine"]) != (record["torch"], record["machine"]):
        print(f"note: recorded with torch {saved['torch']} on {saved['machine']}, compared with torch "
              f"{record['torch']} on {record['machine']}: floating-point results may differ for that alone")
    found = [line for name in names for line in differences(saved["runs"].get(name), results[name], name)]
    for line in found:
        print(line)
    print("method_results=same" if not found else f"method_results=differ({len(found)})")
    return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())
