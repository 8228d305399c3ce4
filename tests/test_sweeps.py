"""Sweeps: parallel on one machine (joblib), through submitit (the SLURM path, run locally), resumable, and a
failing job that never takes the others down."""
import csv
import statistics

import pytest
from hydra import compose, initialize_config_dir

from conftest import corrupt_idx, read_metrics, read_summary
from test_data import write_mnist
from prunekit.config import config_dir, register_schemas
from prunekit.sweeps import threads_per_job

QUICK = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "figures=false")


@pytest.mark.slow
def test_a_joblib_sweep_finishes_the_jobs_that_did_not_fail(cli, tmp_path):
    data = corrupt_idx(tmp_path / "fm")
    code, _, err = cli("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       "dataset=digits,fashion_mnist,synthetic", f"data.root={data}", *QUICK, "hydra.sweep.dir=sweep")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("prunekit: error")]
    assert len(lines) == 1 and "job 1" in lines[0] and "idx" in lines[0].lower()
    assert read_summary(tmp_path / "sweep" / "0")["dataset"] == "digits"
    assert read_summary(tmp_path / "sweep" / "2")["dataset"] == "synthetic"
    assert not (tmp_path / "sweep" / "1").exists()  # the failed job left nothing
    assert not (tmp_path / "sweep" / ".prunekit-failures").exists()
    env = [line for line in (tmp_path / "sweep" / "0" / "env.json").read_text().splitlines() if "threads" in line]
    assert env == [f'  "threads": {threads_per_job(2)},']


def test_threads_per_job_never_oversubscribe_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert [threads_per_job(n) for n in (None, 1, 2, 4, 16, 32, -1)] == [None, 16, 8, 4, 1, 1, 1]


@pytest.mark.slow
def test_a_sweep_through_submitit_runs_like_a_local_one(cli, tmp_path):
    code, _, err = cli("train", "-m", "hydra/launcher=submitit_local", "seed=0", *QUICK, "hydra.sweep.dir=sweep")
    assert code == 0, err
    summary = read_summary(tmp_path / "sweep" / "0")
    assert abs(summary["density"] - 0.1) < 0.005 and summary["accuracy"] > 0.3  # chance is 0.1; 4 short epochs


def test_the_slurm_preset_composes_and_every_key_can_be_overridden():
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.timeout_min=60", "hydra.launcher.gpus_per_node=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 60, 2)
    assert (launcher.cpus_per_task, launcher.mem_gb, launcher.array_parallelism) == (8, 32, 16)


@pytest.mark.slow
def test_an_interrupted_sweep_runs_only_the_missing_jobs_and_reports_every_group(cli, tmp_path, monkeypatch):
    from prunekit import pipeline

    args = ("train", "-m", "method.sparsity=0.5,0.8", "seed=0,1", *QUICK, "hydra.sweep.dir=sweep")
    original, calls = pipeline.Run.execute, []

    def execute_then_stop(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the third job, before its first checkpoint
        return original(self)

    monkeypatch.setattr(pipeline.Run, "execute", execute_then_stop)
    code, _, err = cli(*args)
    monkeypatch.setattr(pipeline.Run, "execute", original)
    assert code == 130 and "the same command continues the sweep" in err
    finished = {n: (tmp_path / "sweep" / str(n) / "summary.json").stat().st_mtime_ns for n in range(2)}
    code, out, err = cli(*args)
    assert code == 0, err
    assert "4 jobs: 2 finished (skipped), 0 resumed, 2 to run" in out
    assert {n: (tmp_path / "sweep" / str(n) / "summary.json").stat().st_mtime_ns for n in range(2)} == finished
    for n in range(2, 4):
        assert len([r for r in read_metrics(tmp_path / "sweep" / str(n)) if r.get("event") == "done"]) == 1
    assert "4 finished (skipped)" in cli(*args)[1]  # nothing left to do

    code, out, err = cli("report", "sweep")
    assert code == 0, err
    summaries = [read_summary(tmp_path / "sweep" / str(n)) for n in range(4)]
    rows = list(csv.DictReader((tmp_path / "sweep" / "report" / "table.csv").read_text().splitlines()))
    assert len(rows) == 2
    for row in rows:
        group = [s["accuracy"] * 100 for s in summaries if s["sparsity_target"] == float(row["method.sparsity"])]
        assert row["accuracy (%) n"] == "2"
        assert float(row["accuracy (%) mean"]) == pytest.approx(statistics.mean(group))
        assert float(row["accuracy (%) std"]) == pytest.approx(statistics.stdev(group))
    for name in ("table.md", "table.tex", "accuracy_vs_density.png", "accuracy_vs_density.pdf",
                 "accuracy_vs_flops.png", "accuracy_vs_flops.pdf"):
        assert (tmp_path / "sweep" / "report" / name).stat().st_size > 0


@pytest.mark.slow
def test_the_gumbel_presets_paper_block_prints_beside_the_measured_cell(cli, tmp_path):
    write_mnist(tmp_path / "mnist", gz=True, n_train=200, n_test=50)
    code, _, err = cli("train", "experiment=gumbel_mnist", f"data.root={tmp_path / 'mnist'}", "prune.epochs=1",
                       "finetune.epochs=0", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    code, out, err = cli("report", "run")
    assert code == 0, err
    line = next(line for line in out.splitlines() if "claimed, no number" in line)
    ours = read_summary(tmp_path / "run")["accuracy"] * 100
    assert "0.9985" in line and "gumbel" in line and f"{ours:.2f}" in line  # the published cell beside ours
    assert "Neural Network Pruning by Gradient Descent" in out


def test_resume_true_belongs_to_single_runs(cli):
    code, _, err = cli("train", "-m", "resume=true", "seed=0,1")
    assert code == 2 and "same -m command" in err
