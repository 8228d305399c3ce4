"""A failing or interrupted run never deletes what it did not create, never overwrites a run, never trains
on bad numbers, and says in one line what went wrong and what to do."""
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import corrupt_idx, interrupt_after, read_metrics, read_summary, write_cifar10, write_mnist

QUICK = ("train.epochs=2", "prune.epochs=2", "finetune.epochs=1")


def _one_line(code, err, *named):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for word in named:
        assert word in lines[0], (word, err)


@pytest.mark.parametrize("where", ["folder", "."])
def test_a_failing_run_leaves_a_users_folder_and_its_files(cli, tmp_path, monkeypatch, where):
    data = corrupt_idx(tmp_path / "fm")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    if where == ".":
        monkeypatch.chdir(folder)
    run_dir = "." if where == "." else str(folder)
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={data}", f"hydra.run.dir={run_dir}")
    _one_line(code, err, "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "sub"]
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_failing_run_removes_the_directories_it_created(cli, tmp_path):
    data = corrupt_idx(tmp_path / "fm")
    code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={data}", "hydra.run.dir=new/deep/run")
    assert code == 2
    assert not (tmp_path / "new").exists()


class Calls:
    """Unpickling this calls ``function(argument)``: what a crafted file can do with any code."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("function, argument, named", [
    (Path.touch, lambda path: path, "pathlib.Path.touch"),
    (os.system, lambda path: f"touch {path}", "system"),
])
def test_a_cifar_batch_that_would_run_code_is_refused_unrun(cli, tmp_path, function, argument, named):
    folder = write_cifar10(tmp_path / "data")
    pickle.loads(pickle.dumps(Calls(function, argument(tmp_path / "proof"))))
    assert (tmp_path / "proof").exists()  # plain unpickling runs it
    batch = {"data": Calls(function, argument(tmp_path / "marker")), "labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch))
    code, _, err = cli("train", "dataset=cifar10", f"data.root={tmp_path / 'data'}", "hydra.run.dir=run")
    assert not (tmp_path / "marker").exists()
    _one_line(code, err, "data_batch_2", "refused", named)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_dense_cache_tells_data_folders_apart_by_their_contents(cli, tmp_path):
    write_mnist(tmp_path / "a", gz=True)
    write_mnist(tmp_path / "b", gz=True, seed=5)  # the same names, sizes and labels, other images
    shutil.copytree(tmp_path / "a", tmp_path / "copy_of_a")
    for name in ("a", "b", "copy_of_a"):
        code, _, err = cli("train", "dataset=fashion_mnist", f"data.root={tmp_path / name}", "data.val_fraction=0.25",
                           *QUICK, "latency=false", "figures=false", f"hydra.run.dir=run_{name}")
        assert code == 0, err
    runs = {name: tmp_path / f"run_{name}" for name in ("a", "b", "copy_of_a")}
    summaries = {name: read_summary(run) for name, run in runs.items()}
    dense_epochs = {name: sum(r.get("stage") == "dense" for r in read_metrics(run)) for name, run in runs.items()}
    assert {name: s["dense_cache_hit"] for name, s in summaries.items()} == {"a": False, "b": False, "copy_of_a": True}
    assert dense_epochs == {"a": 2, "b": 2, "copy_of_a": 0}
    fingerprints = {name: s["data_fingerprint"] for name, s in summaries.items()}
    assert fingerprints["a"] != fingerprints["b"] and fingerprints["a"] == fingerprints["copy_of_a"]


def test_an_empty_training_split_stops_the_run_before_it_trains(cli, tmp_path):
    code, _, err = cli("train", "data.val_fraction=0.999", "hydra.run.dir=run")
    _one_line(code, err, "train split holds no sample", "data.val_fraction=0.999")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_run_directory_is_never_reused_without_resume(cli, tmp_path):
    assert cli("train", *QUICK, "hydra.run.dir=run")[0] == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run")
    _one_line(code, err, "resume=true", "another directory")
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run", "resume=true")
    _one_line(code, err, "finished")
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    # a sweep continues in its own directory, but a job directory holding a run of another config is refused
    assert cli("train", "-m", "method.sparsity=0.5", *QUICK, "hydra.sweep.dir=sweep")[0] == 0
    code, _, err = cli("train", "-m", "method.sparsity=0.8,0.5", *QUICK, "hydra.sweep.dir=sweep")
    _one_line(code, err, "another config", "method")
    assert not (tmp_path / "sweep" / "1").exists()


@pytest.mark.parametrize("args, named", [
    (["experiment=foo"], "gumbel_mnist"),
    (["+train.epoch=3"], "train.epoch"),
    (["+method.foo=1"], "method.foo"),
    (["train.lr=nan"], "train.lr=nan"),
    (["train.lr=inf"], "train.lr=inf"),
    (["train.weight_decay=nan"], "train.weight_decay=nan"),
    (["train.momentum=-1"], "train.momentum"),
    (["prune.momentum=1.0"], "prune.momentum"),
    (["eval_batch_size=0"], "eval_batch_size=0"),
    (["finetune.batch_size=0"], "finetune.batch_size=0"),
    (["train.lr=0"], "train.lr=0"),
    (["seed=-1"], "seed=-1"),
    (["model.hidden=[300,0]"], "model.hidden[1]=0"),
    (["model.dropout=1.0"], "model.dropout"),
    (["method.min_keep=-1"], "method.min_keep"),
    (["method=gumbel", "method.tau=0"], "method.tau"),
    (["cache_dir=notes.txt"], "notes.txt is a file"),
    (["hydra.run.dir=notes.txt/run"], "notes.txt is a file"),
    (["method=magnitud"], "magnitude"),
    (["method.sparsity=0.5,0.8"], "add -m"),
    (["method.sparsity=[0.5"], "method.sparsity=[0.5"),
])
def test_bad_values_exit_2_with_one_line_before_anything_is_written(cli, tmp_path, args, named):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    code, out, err = cli("train", *args)
    _one_line(code, err, named)
    assert "Config search path" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no run dir, no cache, no lock file


def test_a_free_form_paper_block_stays_open(cli):
    code, out, _ = cli("train", "+paper.table=3", "--cfg", "job")
    assert code == 0 and "table: 3" in out


def test_a_diverging_run_stops_with_a_line_and_caches_nothing(cli, tmp_path):
    code, _, err = cli("train", "train.lr=1e30", "train.momentum=0", "hydra.run.dir=run")
    _one_line(code, err, "dense stage", "epoch 1", "lower the learning rate")
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").glob("*.pt"))


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated", "foreign"])
@pytest.mark.slow
def test_a_damaged_last_checkpoint_is_named_on_resume(cli, tmp_path, damage):
    assert cli("train", *QUICK, "hydra.run.dir=run")[0] == 0
    (tmp_path / "run" / "summary.json").unlink()  # as if killed before the end
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    if damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, last)
    else:
        last.write_bytes(damage)
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run", "resume=true")
    _one_line(code, err, "last.pt")
    assert (tmp_path / "run" / "checkpoints" / "dense.pt").is_file()  # a failed resume deletes nothing


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
@pytest.mark.slow
def test_a_damaged_dense_cache_entry_is_set_aside_and_trained_again(cli, tmp_path, damage):
    assert cli("train", *QUICK, "hydra.run.dir=first")[0] == 0
    [entry] = (tmp_path / "cache").glob("*.pt")
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    else:
        torch.save({"model": {"fc1.weight": torch.zeros(2, 2)}, "metrics": {}}, entry)
    code, _, err = cli("train", *QUICK, "hydra.run.dir=second")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and entry.name in warnings[0]
    timeless = lambda run: {k: v for k, v in read_summary(run).items() if not k.startswith(("seconds", "latency"))}  # noqa: E731
    assert timeless(tmp_path / "second") == timeless(tmp_path / "first")
    assert [e["hit"] for e in read_metrics(tmp_path / "second") if e.get("event") == "dense_cache"] == [False]
    assert len(list((tmp_path / "cache").glob("*.bad-*"))) == 1
    assert cli("train", *QUICK, "hydra.run.dir=third")[0] == 0  # the retrained entry serves the next run
    assert [e["hit"] for e in read_metrics(tmp_path / "third") if e.get("event") == "dense_cache"] == [True]


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes_to_the_same_result(cli, tmp_path, monkeypatch):
    # Dropout draws from the global generators: resume is exact only if last.pt carries their states.
    args = ("train", "model.dropout=0.3", "train.epochs=3", "prune.epochs=3", "finetune.epochs=2")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    restore = interrupt_after(monkeypatch, 4)  # in the middle of pruning
    code, _, err = cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")
    restore()
    assert code == 130 and "Traceback" not in err
    command = shlex.split(err.strip().splitlines()[-1].split("continue with: ", 1)[1])
    assert command[:2] == ["prunekit", "train"] and "resume=true" in command
    code, _, err = cli(*command[1:])
    assert code == 0, err
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "val_accuracy", "density", "params_effective"):
        assert whole[key] == resumed[key], key


def test_ctrl_c_before_the_first_checkpoint_keeps_nothing(cli, tmp_path, monkeypatch):
    restore = interrupt_after(monkeypatch, 0)
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run")
    restore()
    assert code == 130 and "nothing was kept" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_dense_stage_from_cache_or_trained_gives_the_same_pruned_result(cli, tmp_path):
    args = ("train", "model.dropout=0.3", *QUICK)
    assert cli(*args, "hydra.run.dir=miss")[0] == 0
    assert cli(*args, "hydra.run.dir=hit")[0] == 0
    miss, hit = read_summary(tmp_path / "miss"), read_summary(tmp_path / "hit")
    assert (miss["dense_cache_hit"], hit["dense_cache_hit"]) == (False, True)
    assert miss["loss"] == hit["loss"]


def test_version_and_module_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "prunekit", "--version"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("prunekit ")
    assert out.stdout.split()[1][0].isdigit()
