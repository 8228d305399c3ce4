#!/usr/bin/env python
"""Reproduce the Gumbel-Softmax pruning claim (arXiv 2311.12526) against magnitude pruning, same budget.

For each dataset (Fashion-MNIST always; MNIST when --mnist-root is given) and each density (2%, 0.5% and
0.15% of the weights by default), runs

    prunekit train experiment=gumbel_<dataset> method.sparsity=<1 - density>             (gumbel)
    prunekit train experiment=gumbel_<dataset> method=magnitude method.sparsity=...      (magnitude)

Both get the preset's total number of epochs: gumbel learns weights and gates together from scratch as
the paper does (train.epochs=0); magnitude splits the same total into dense training, gradual pruning
along the same schedule, and fine-tuning (--magnitude-split, default 1:3:1). Prints a table of test
accuracy, weights kept, effective parameters and input features used (mean ± std over the seeds), then
checks issue 3's targets on Fashion-MNIST: gumbel >= 0.80 at 0.15% and >= 0.835 at 0.5%, and
gumbel - magnitude >= 5 points at 0.15%.

    python scripts/reproduce_gumbel.py                          # Fashion-MNIST from the Debian package
    python scripts/reproduce_gumbel.py --mnist-root ~/data/mnist --seeds 0 1 2 --jobs 2

Runs go to --out/<dataset>/<method>/e<dense>-<prune>-<finetune epochs>/d<density>/s<seed>; a finished run is
not run again (delete it to redo).
Exit status: 0 when every target holds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

TARGETS = {0.0015: 0.80, 0.005: 0.835}  # Fashion-MNIST, gumbel, same budget as magnitude
MARGIN_AT = 0.0015
MARGIN = 0.05


def preset_budget(preset: str) -> dict[str, int]:
    """The epochs of each stage in an experiment preset, as composed by Hydra."""
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("train", overrides=[f"experiment={preset}"])
    return {stage: int(cfg[stage].epochs) for stage in ("train", "prune", "finetune")}


def magnitude_budget(total: int, split: list[float]) -> dict[str, int]:
    """``total`` epochs shared as dense / prune / finetune in the proportions ``split``."""
    dense = round(total * split[0] / sum(split))
    prune = round(total * split[1] / sum(split))
    return {"train": dense, "prune": prune, "finetune": total - dense - prune}


def command(dataset: str, root: str, method: str, density: float, seed: int, budget: dict, run_dir: Path) -> list[str]:
    args = [sys.executable, "-m", "prunekit.cli", "train", f"experiment=gumbel_{dataset}", f"data.root={root}",
            f"method.sparsity={1 - density:.6g}", f"seed={seed}", f"hydra.run.dir={run_dir}"]
    if method != "gumbel":
        args.append(f"method={method}")
    args += [f"{stage}.epochs={epochs}" for stage, epochs in budget.items()]
    return args


def run(args: list[str], run_dir: Path, threads: int | None) -> dict:
    """One prunekit run (skipped when its summary exists); returns summary.json plus the weights kept."""
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr.strip()}")
    summary = json.loads(summary_path.read_text())
    summary["weights_kept"] = round(summary["density"] * prunable_weights(run_dir))
    return summary


def prunable_weights(run_dir: Path) -> int:
    """Weights of the prunable layers (layers.csv shapes, biases excluded)."""
    total = 0
    for line in (run_dir / "layers.csv").read_text().splitlines()[1:]:
        shape = line.split(",")[2]
        product = 1
        for size in shape.split("x"):
            product *= int(size)
        total += product
    return total


def cell(values: list, fmt: str) -> str:
    if any(v is None for v in values):
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fashion-root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--mnist-root", default=None, help="also run MNIST, read from this folder")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.02, 0.005, 0.0015])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    # 1:3:1 (3/9/3 of 15 epochs) beat 1:1:1 (5/5/5) for magnitude at every density on Fashion-MNIST
    # (0.784 against 0.769 at 0.15%, seeds 0-2), so the comparison gives magnitude its better split.
    parser.add_argument("--magnitude-split", type=float, nargs=3, default=[1, 3, 1], metavar=("DENSE", "PRUNE", "FT"),
                        help="how magnitude shares the preset's total epochs (default 1 3 1)")
    parser.add_argument("--out", type=Path, default=Path("reproduce_gumbel"))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each then uses one thread)")
    opts = parser.parse_args()

    datasets = [("fashion_mnist", opts.fashion_root)] + ([("mnist", opts.mnist_root)] if opts.mnist_root else [])
    jobs = []
    for dataset, root in datasets:
        gumbel = preset_budget(f"gumbel_{dataset}")
        budgets = {"gumbel": gumbel, "magnitude": magnitude_budget(sum(gumbel.values()), opts.magnitude_split)}
        for density in opts.densities:
            for method, budget in budgets.items():
                for seed in opts.seeds:
                    epochs = "-".join(str(budget[stage]) for stage in ("train", "prune", "finetune"))
                    run_dir = (opts.out / dataset / method / f"e{epochs}" / f"d{density:g}" / f"s{seed}").resolve()
                    jobs.append(((dataset, density, method), command(dataset, root, method, density, seed, budget,
                                                                     run_dir), run_dir))
    console = Console(width=max(Console().width, 120))
    for dataset, _ in datasets:
        gumbel = preset_budget(f"gumbel_{dataset}")
        console.print(f"{dataset}: gumbel epochs {gumbel}, magnitude epochs "
                      f"{magnitude_budget(sum(gumbel.values()), opts.magnitude_split)}")
    threads = 1 if opts.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        summaries = list(pool.map(lambda job: (job[0], run(job[1], job[2], threads)), jobs))

    results: dict[tuple, list[dict]] = {}
    for key, summary in summaries:
        results.setdefault(key, []).append(summary)
    table = Table(title=f"gumbel vs magnitude, same budget (seeds {' '.join(map(str, opts.seeds))})")
    for column in ("dataset", "density", "method", "accuracy", "weights kept", "effective params", "inputs used"):
        table.add_column(column, justify="left" if column in ("dataset", "method") else "right")
    for (dataset, density, method), runs in results.items():
        values = {key: [r.get(key) for r in runs] for key in ("accuracy", "weights_kept", "params_effective",
                                                                  "inputs_used")}
        table.add_row(dataset, f"{density:.2%}", method, cell(values["accuracy"], ".4f"),
                      *(cell(values[key], ".0f") for key in ("weights_kept", "params_effective", "inputs_used")))
    console.print(table)

    def mean_accuracy(dataset, density, method):
        runs = results.get((dataset, density, method))
        return statistics.mean(r["accuracy"] for r in runs) if runs else None

    ok = True
    for density, floor in TARGETS.items():
        accuracy = mean_accuracy("fashion_mnist", density, "gumbel")
        if accuracy is not None:
            ok &= accuracy >= floor
            console.print(f"target fashion_mnist gumbel at {density:.2%}: {accuracy:.4f} >= {floor} "
                          f"{'ok' if accuracy >= floor else 'MISSED'}")
    g, m = (mean_accuracy("fashion_mnist", MARGIN_AT, name) for name in ("gumbel", "magnitude"))
    if g is not None and m is not None:
        ok &= g - m >= MARGIN
        console.print(f"target fashion_mnist gumbel - magnitude at {MARGIN_AT:.2%}: {100 * (g - m):.1f} points "
                      f">= {100 * MARGIN:.0f} {'ok' if g - m >= MARGIN else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
