#!/usr/bin/env python
"""Benchmark a sweep of prunekit jobs run one after another (Hydra's basic launcher) against joblib.

    python scripts/bench_sweep.py                       # 8 digits jobs, joblib with 2 workers, one round
    python scripts/bench_sweep.py --repeats 3 --keep    # median of 3 rounds per launcher; keep the directories

The same sweep of 8 short jobs on the bundled digits (``method=magnitude,random`` x
``method.sparsity=0.5,0.7,0.8,0.9``, MLP 300-100) is run as a whole command, ``python -m prunekit train -m ...``
in a subprocess, once per launcher, each into its own temporary ``hydra.sweep.dir``:

- basic: Hydra's default launcher, the jobs one after another in one process, torch's default number of
  threads (what a user gets without asking for anything);
- joblib: ``hydra/launcher=joblib hydra.launcher.n_jobs=N``, the jobs in N loky worker processes, each job at
  ``cores // N`` torch threads (prunekit's ``threads_per_job``, so that together they do not oversubscribe).

The wall clock of the whole command counts: interpreter start-up, imports (the loky workers import torch
and prunekit again), Hydra, every job's data loading, training, evaluation, latency timing and figures.

Dense cache: warm. One untimed run first trains the dense model into a temporary ``PRUNEKIT_CACHE``
(prune and fine-tune epochs 0, no latency timing), and both timed sweeps read it. All 8 jobs share one
dense model (same seed, data, model and dense epochs), so each sweep does exactly the same work, 8 x (prune,
compact, fine-tune, evaluate); a cold cache would instead make the two first parallel jobs race to train the
same dense model, a cost of that one sweep's start rather than of the launcher. Every job must report
``dense_cache_hit`` for the comparison to count.

Both sweeps must exit 0 with 8 summary.json files, and each job's density, non-zero count and sparsity
target must be equal under both launchers (accuracies may differ in the last digits: 1 thread against
several changes the order of floating-point sums; the largest difference is printed).

The last line printed is exactly ``joblib_speedup=<x>x``: the basic launcher's wall clock over joblib's
(median per launcher with ``--repeats``; rounds alternate the order, so that a change of load reaches both).
How to read the table: only the jobs run in parallel. The time until the first job starts ("start s":
imports of torch, torchvision and prunekit, preflight; for joblib also the loky workers, which import
all of it again) and the end of the command are paid once per sweep, so the speedup of a short sweep
stays below that of its jobs; "job s" and "train s" per job show whether one thread per job is as fast
as torch's default.
Only meaningful on an otherwise idle machine: other processes slow torch's multi-threaded kernels (the
basic launcher's) much more than single-threaded ones; read the load average printed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from prunekit.rundir import SUMMARY
from prunekit.sweeps import threads_per_job

SWEEP = ["method=magnitude,random", "method.sparsity=0.5,0.7,0.8,0.9"]
JOBS = 8  # 2 methods x 4 sparsities
# Dense epochs fixed here (they key the cache); prune and fine-tune long enough that a job trains for
# a few seconds, not only starts up.
EPOCHS = ["train.epochs=10", "prune.epochs=100", "finetune.epochs=60"]
# untimed run that fills the dense cache; method and sparsity are not part of the dense model's key
# (check_agreement insists that every timed job then hits the cache)
WARM = ["method=magnitude", EPOCHS[0], "prune.epochs=0", "finetune.epochs=0", "latency=false"]
# what must not depend on the launcher (all fixed by the job's config)
EXACT = ("density", "params_nonzero", "sparsity_target", "dense_cache_hit")
LAUNCHERS = ("basic", "joblib")


def prunekit_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "prunekit", "train", *overrides]


def launcher_overrides(launcher: str, n_jobs: int) -> list[str]:
    return [] if launcher == "basic" else ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall-clock seconds of ``command`` and the epoch time it began at; SystemExit with its stderr's tail
    when it fails."""
    began, epoch = time.perf_counter(), time.time()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"exit {done.returncode}: {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds, epoch


def first_job_after(sweep_dir: Path, began: float) -> float:
    """Seconds from the command's start until the first job wrote its config (Hydra does that in the process
    that runs the job): interpreter, imports, preflight and, for joblib, starting the workers."""
    return min(p.stat().st_mtime for p in sweep_dir.glob("*/.hydra/config.yaml")) - began


def collect(sweep_dir: Path) -> dict[tuple[str, ...], dict]:
    """Each job's summary.json, keyed by its task overrides (the same under both launchers: Hydra keeps
    ``hydra/launcher=...`` among its own overrides)."""
    jobs = {}
    for summary in sorted(sweep_dir.glob(f"*/{SUMMARY}")):
        overrides = OmegaConf.load(summary.parent / ".hydra" / "overrides.yaml")
        jobs[tuple(overrides)] = json.loads(summary.read_text())
    return jobs


def check_agreement(reference: dict[tuple[str, ...], dict], other: dict[tuple[str, ...], dict]) -> float:
    """SystemExit unless both hold the same JOBS jobs with equal EXACT fields and every job hit the warm
    cache; the largest difference of test accuracy otherwise."""
    if len(reference) != JOBS or reference.keys() != other.keys():
        raise SystemExit(f"expected the same {JOBS} jobs in both sweeps, got {len(reference)} and {len(other)}")
    for key, job in reference.items():
        differing = [f for f in EXACT if job.get(f) != other[key].get(f)]
        if differing:
            raise SystemExit(f"job {' '.join(key)} differs between launchers in {', '.join(differing)}")
        if not job["dense_cache_hit"]:
            raise SystemExit(f"job {' '.join(key)} trained its dense model: the cache was not warm, unfair timing")
    return max(abs(job["accuracy"] - other[key]["accuracy"]) for key, job in reference.items())


def stage_seconds(jobs: dict[tuple[str, ...], dict]) -> dict[str, float]:
    """Mean seconds per job of each stage as the jobs recorded them (shows what runs inside a job, as
    against the command's start-up and per-job overheads)."""
    stages = next(iter(jobs.values()))["seconds"]
    return {stage: statistics.fmean(job["seconds"][stage] for job in jobs.values()) for stage in stages}


def summary_line(speedup: float) -> str:
    """The last line: ``joblib_speedup=<x>x``."""
    return f"joblib_speedup={speedup:.2f}x"


def render(walls: dict[str, list[float]], startup: dict[str, list[float]], stages: dict[str, dict[str, float]],
           threads: dict[str, str], title: str, console: Console) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("launcher", "threads", "wall s", "jobs/min", "start s", "job s", "train s"):
        table.add_column(column, justify="left" if column == "launcher" else "right")
    for launcher, values in walls.items():
        wall, s = statistics.median(values), stages[launcher]
        table.add_row(launcher, threads[launcher], " ".join(f"{v:.1f}" for v in values), f"{JOBS * 60 / wall:.1f}",
                      f"{statistics.median(startup[launcher]):.1f}", f"{s['total']:.2f}",
                      f"{s.get('prune', 0.0) + s.get('finetune', 0.0):.2f}")
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib workers (hydra.launcher.n_jobs)")
    parser.add_argument("--repeats", type=int, default=1, help="timed sweeps per launcher (median counts)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary sweep and cache directories")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> float:
    args = parse_args(argv)
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    env = {**os.environ, "PRUNEKIT_CACHE": str(work / "cache")}
    load_before = os.getloadavg()[0]
    walls: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    startup: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    results: dict[str, dict] = {}
    worst_accuracy = 0.0
    try:
        # untimed: the one dense model that every job of both sweeps then reads from the cache
        run(prunekit_command(*WARM, f"hydra.run.dir={work / 'warm'}"), env, work)
        for index in range(args.repeats):
            for launcher in (LAUNCHERS if index % 2 == 0 else LAUNCHERS[::-1]):
                sweep_dir = work / f"{launcher}-{index}"
                command = prunekit_command("-m", *SWEEP, *EPOCHS, *launcher_overrides(launcher, args.n_jobs),
                                           f"hydra.sweep.dir={sweep_dir}")
                seconds, began = run(command, env, work)
                walls[launcher].append(seconds)
                startup[launcher].append(first_job_after(sweep_dir, began))
                jobs = collect(sweep_dir)
                results.setdefault(launcher, jobs)  # round 0 runs basic first: the reference for all
                worst_accuracy = max(worst_accuracy, check_agreement(results["basic"], jobs))
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    threads = {"basic": str(torch.get_num_threads()), "joblib": f"{args.n_jobs} x {threads_per_job(args.n_jobs)}"}
    render(walls, startup, {name: stage_seconds(jobs) for name, jobs in results.items()}, threads,
           f"{JOBS} digits jobs ({' '.join(SWEEP + EPOCHS)}), warm dense cache, {os.cpu_count()} CPU(s)", console)
    print(f"threads: torch threads per job (basic: torch's default; joblib: workers x cores // n_jobs); wall s: the "
          f"whole command, every round; start s: until the first job began (interpreter, imports, preflight, for "
          f"joblib the workers' start); job s: the stages' own seconds per job from summary.json (mean); train s: "
          f"of those, prune + finetune (the rest is mostly evaluate: figures, latency timing). "
          f"Results agree (density, non-zeros); largest test accuracy difference {worst_accuracy:.4f}. Load average "
          f"(1 min) {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", flush=True)
    speedup = statistics.median(walls["basic"]) / statistics.median(walls["joblib"])
    print(summary_line(speedup), flush=True)
    return speedup


if __name__ == "__main__":
    main(sys.argv[1:])
