"""scripts/bench_sweep.py without running a sweep: the speedup it prints comes from the timed sweeps, how the jobs
of two sweep directories are read and compared, and the command lines. Nothing about speed (the script itself
takes minutes)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import load_script


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


def test_the_speedup_is_the_ratio_of_the_median_timed_sweeps(bench, monkeypatch, capsys):
    """main() with the subprocess replaced: each sweep command writes a fake sweep and 'takes' the next of its
    launcher's wall times; the warm-up run's time counts nowhere."""
    walls = {"warm": [500.0], "basic": [30.0, 90.0, 31.0], "joblib": [12.0, 10.0, 40.0]}
    order = []

    def fake_run(command, env, cwd):
        sweep = [Path(arg.split("=", 1)[1]) for arg in command if arg.startswith("hydra.sweep.dir=")]
        if not sweep:  # the untimed run that fills the dense cache
            launcher = "warm"
        else:
            launcher = "joblib" if "hydra/launcher=joblib" in command else "basic"
            for job in fake_sweep(sweep[0], bench).iterdir():
                (job / ".hydra" / "config.yaml").write_text("seed: 0\n")
        order.append(launcher)
        return walls[launcher].pop(0), time.time() - 1.0

    monkeypatch.setattr(bench, "run", fake_run)
    speedup = bench.main(["--repeats", "3"])
    # the warm-up first, then rounds in alternating order, so that a change of load reaches both launchers
    assert order == ["warm", "basic", "joblib", "joblib", "basic", "basic", "joblib"]
    assert speedup == pytest.approx(31.0 / 12.0)  # median of each launcher's three sweeps
    assert capsys.readouterr().out.strip().splitlines()[-1] == "joblib_speedup=2.58x"


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
