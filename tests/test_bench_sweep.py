"""scripts/bench_sweep.py without running a sweep: the last line's format, how the jobs of two sweep
directories are read and compared, and the command lines. Nothing about speed (the script itself takes
minutes)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import load_script

LAST_LINE = re.compile(r"joblib_speedup=(\d+\.\d{2})x")


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_sweep")


def fake_sweep(root: Path, bench, accuracy: float = 0.9, density: float | None = None) -> Path:
    """A sweep directory as prunekit leaves it: one folder per job with .hydra/overrides.yaml and summary.json."""
    methods, sparsities = (part.split("=")[1].split(",") for part in bench.SWEEP)
    jobs = [(m, s) for m in methods for s in sparsities]
    for number, (method, sparsity) in enumerate(jobs):
        job = root / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- method={method}\n- method.sparsity={sparsity}\n")
        summary = {"density": density if density is not None and number == 3 else 1 - float(sparsity),
                   "params_nonzero": 100, "sparsity_target": float(sparsity), "dense_cache_hit": True,
                   "accuracy": accuracy, "seconds": {"prune": 1.0, "finetune": 0.5, "evaluate": 2.0, "total": 3.5}}
        (job / "summary.json").write_text(json.dumps(summary))
    return root


def test_last_line_format(bench):
    assert LAST_LINE.fullmatch(bench.summary_line(1.5)).group(1) == "1.50"
    assert bench.summary_line(2.004) == "joblib_speedup=2.00x"


def test_agreeing_sweeps_pass_and_report_the_accuracy_difference(bench, tmp_path):
    basic = bench.collect(fake_sweep(tmp_path / "basic", bench))
    joblib = bench.collect(fake_sweep(tmp_path / "joblib", bench, accuracy=0.875))
    assert len(basic) == bench.JOBS
    assert bench.check_agreement(basic, joblib) == pytest.approx(0.025)
    assert bench.stage_seconds(basic)["total"] == pytest.approx(3.5)


def test_a_differing_density_or_a_missing_job_fails(bench, tmp_path):
    basic = bench.collect(fake_sweep(tmp_path / "basic", bench))
    with pytest.raises(SystemExit, match="density"):
        bench.check_agreement(basic, bench.collect(fake_sweep(tmp_path / "other", bench, density=0.0)))
    with pytest.raises(SystemExit, match="same 8 jobs"):
        bench.check_agreement(basic, dict(list(basic.items())[:-1]))


def test_a_cold_cache_is_refused(bench, tmp_path):
    basic = bench.collect(fake_sweep(tmp_path / "basic", bench))
    next(iter(basic.values()))["dense_cache_hit"] = False
    with pytest.raises(SystemExit, match="not warm"):
        bench.check_agreement(basic, basic)


def test_commands_differ_only_in_the_launcher(bench):
    assert bench.launcher_overrides("basic", 2) == []
    assert bench.launcher_overrides("joblib", 3) == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]
    assert bench.prunekit_command("-m", "seed=0")[1:] == ["-m", "prunekit", "train", "-m", "seed=0"]
