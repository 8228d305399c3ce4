"""End to end through the `prunekit` command: accuracy, sparsity, run directory, cache, resume, errors."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import corrupt_idx, interrupt_after, read_metrics, read_summary


@pytest.mark.slow
def test_default_train_on_digits_prunes_to_90_percent(cli, tmp_path):
    code, out, err = cli("train", "hydra.run.dir=run")
    assert code == 0, err
    run = tmp_path / "run"
    summary = read_summary(run)
    assert summary["dense_accuracy"] >= 0.95
    assert summary["accuracy"] >= 0.92
    assert abs(summary["density"] - 0.10) <= 0.005
    assert summary["sparsity_target"] == 0.9
    for key in ("dataset", "model", "method", "schedule", "seed", "device", "loss", "params_total",
                "params_nonzero", "params_effective", "flops_dense", "flops_effective", "seconds"):
        assert key in summary
    assert summary["params_effective"] <= summary["params_nonzero"] < summary["params_total"]
    assert summary["flops_effective"] < summary["flops_dense"]
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "env.json", "metrics.jsonl", "layers.csv",
                 "checkpoints/dense.pt", "checkpoints/pruned.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert (run / "figures").is_dir()
    stages = {r["stage"] for r in read_metrics(run) if "stage" in r}
    assert stages == {"dense", "prune", "finetune"}
    assert "summary" in out  # the closing table


@pytest.mark.slow
def test_same_seed_gives_identical_results_and_another_seed_does_not(cli, tmp_path):
    args = ("train", "train.epochs=3", "prune.epochs=2", "finetune.epochs=1")
    first = [cli(*args, f"hydra.run.dir=a{i}", f"cache_dir={tmp_path}/cache{i}")[0] for i in range(2)]
    assert first == [0, 0]
    a, b = read_summary(tmp_path / "a0"), read_summary(tmp_path / "a1")
    for key in ("accuracy", "loss", "dense_accuracy", "params_nonzero", "params_effective"):
        assert a[key] == b[key], key
    assert cli(*args, "seed=1", "hydra.run.dir=c", f"cache_dir={tmp_path}/cache2")[0] == 0
    assert read_summary(tmp_path / "c")["loss"] != a["loss"]


@pytest.mark.slow
def test_multirun_trains_the_dense_model_once(cli, tmp_path):
    code, _, err = cli("train", "-m", "method.sparsity=0.5,0.8,0.9", "train.epochs=5", "prune.epochs=1",
                       "finetune.epochs=1", "hydra.sweep.dir=sweep")
    assert code == 0, err
    events = [[r for r in read_metrics(tmp_path / "sweep" / str(i)) if r.get("event") == "dense_cache"][0]
              for i in range(3)]
    assert [e["hit"] for e in events] == [False, True, True]
    runs = [tmp_path / "sweep" / str(i) for i in range(3)]
    # a hit trains nothing and serves the same dense network
    assert [sum(r.get("stage") == "dense" for r in read_metrics(run)) for run in runs] == [5, 0, 0]
    summaries = [read_summary(run) for run in runs]
    assert [s["dense_cache_hit"] for s in summaries] == [False, True, True]
    assert len({s["dense_accuracy"] for s in summaries}) == 1
    dense = [torch.load(run / "checkpoints" / "dense.pt", weights_only=True) for run in runs]
    assert all(d.keys() == dense[0].keys() and all(torch.equal(d[k], dense[0][k]) for k in d) for d in dense[1:])
    assert [round(s["density"], 2) for s in summaries] == [0.5, 0.2, 0.1]


@pytest.mark.slow
def test_resume_ends_with_the_same_result(cli, tmp_path, monkeypatch):
    args = ("train", "train.epochs=3", "prune.epochs=3", "finetune.epochs=2", "method=random")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    # Interrupt a second run after its 5th epoch checkpoint (in the middle of pruning).
    restore = interrupt_after(monkeypatch, 5)
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    assert not (tmp_path / "broken" / "summary.json").exists()
    # resuming with another config is refused and leaves the run as it was
    last = (tmp_path / "broken" / "checkpoints" / "last.pt").read_bytes()
    code, _, err = cli(*args, "hydra.run.dir=broken", "finetune.epochs=5", "resume=true")
    assert code == 2 and "finetune" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "broken" / "checkpoints" / "last.pt").read_bytes() == last
    code, _, err = cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")
    assert code == 0, err
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "density", "params_effective"):
        assert whole[key] == resumed[key], key
    epochs = [(r["stage"], r["epoch"]) for r in read_metrics(tmp_path / "broken") if "stage" in r]
    assert len(epochs) == len(set(epochs)) == 8  # no epoch logged twice


@pytest.mark.slow
def test_fashion_mnist_mlp_at_95_percent_sparsity(cli, tmp_path, fashion_mnist):
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={fashion_mnist}", "method.sparsity=0.95",
                       "train.epochs=4", "prune.epochs=3", "finetune.epochs=2", "train.batch_size=128",
                       "prune.batch_size=128", "finetune.batch_size=128", "latency=false", "figures=false",
                       "hydra.run.dir=fm")  # latency and figures have tests of their own; this one is about accuracy
    assert code == 0, err
    summary = read_summary(tmp_path / "fm")
    assert abs(summary["density"] - 0.05) <= 0.005
    assert summary["accuracy"] >= 0.83


@pytest.mark.parametrize("args, named", [
    (["dataset=svhn"], "svhn"),
    (["model=vgg19"], "vgg19"),
    (["method=magnitud"], "magnitud"),
    (["schedule=cubic"], "cubic"),
    (["method.sparsiti=0.5"], "sparsiti"),
    (["method.sparsity=1.0"], "1.0"),
    (["method.sparsity=-0.1"], "-0.1"),
    (["method.sparsity=abc"], "abc"),
    (["figures=2"], "figures=2"),
    (["-m", "cudnn.benchmark=true,2"], "cudnn.benchmark=2"),
    (["-m", "method.sparsity=0.5,1.5"], "1.5"),
    (["dataset=mnist", "data.root=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["resume=true", "hydra.run.dir=nowhere"], "nowhere"),
])
def test_user_errors_exit_2_with_one_line(cli, tmp_path, args, named):
    code, out, err = cli("train", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], err
    assert "Traceback" not in err + out
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_corrupt_dataset_file_exits_2_and_leaves_nothing(cli, tmp_path):
    root = corrupt_idx(tmp_path / "fm")
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={root}", "hydra.run.dir=bad")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "idx" in err.lower()
    assert not (tmp_path / "bad").exists()


def test_debug_shows_the_traceback(cli):
    with pytest.raises(Exception):
        cli("train", "method.sparsity=1.5", "debug=true")


def test_list_help_and_cfg(cli):
    code, out, _ = cli("list")
    assert code == 0
    for word in ("digits", "fashion_mnist", "caltech101", "vgg16", "resnet18", "magnitude", "random", "agp",
                 "one_cycle", "experiment"):
        assert word in out
    code, out, _ = cli("--help")
    assert code == 0 and "train" in out and "list" in out
    code, out, _ = cli("train", "--cfg", "job", "method.sparsity=0.5")
    assert code == 0 and "sparsity: 0.5" in out
    code, _, err = cli("trian")
    assert code == 2 and "trian" in err
    shutil.rmtree("outputs", ignore_errors=True)


@pytest.mark.slow
def test_explain_rebuilds_the_figures_of_a_magnitude_run(cli, tmp_path):
    assert cli("train", "train.epochs=3", "prune.epochs=2", "finetune.epochs=1", "hydra.run.dir=run")[0] == 0
    figures = tmp_path / "run" / "figures"
    shutil.rmtree(figures)
    code, out, err = cli("explain", "run")
    assert code == 0, err
    for name in ("importance.png", "symmetry.png", "pathways.png", "importance.csv"):
        assert (figures / name).stat().st_size > 0
    summary = read_summary(tmp_path / "run")
    assert 0 < summary["inputs_used"] <= 64 and summary["alive_units"][-1] == 10
    # a checkpoint written for another model is refused with one line
    (tmp_path / "run" / "checkpoints" / "pruned.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("explain", "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pruned.pt" in err


@pytest.mark.slow
def test_concurrent_runs_share_one_dense_training(tmp_path):
    """Two processes started together: the file lock makes one train and the other reuse its result."""
    # One thread each: two processes with two threads on two cores would mostly wait for each other.
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "prunekit", "train", "train.epochs=20", "prune.epochs=1", "finetune.epochs=0"]
    procs = [subprocess.Popen([*args, f"hydra.run.dir={tmp_path}/r{i}"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    hits = sorted(read_summary(tmp_path / f"r{i}")["dense_cache_hit"] for i in range(2))
    assert hits == [False, True]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
