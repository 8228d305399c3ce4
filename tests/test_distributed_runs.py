"""Runs on two ranks of gloo on the CPU: the same masks on every rank for every criterion that reads data; a sweep
whose jobs are runs on one and two ranks with the same numbers, each in one run directory written once; and a
killed rank that stops the run, which resume=true continues to the uninterrupted run's numbers."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import read_metrics, read_summary
from prunekit.errors import UserError

# 12 dense epochs: time enough to kill a rank in the dense stage
RUN = ("train.epochs=12", "prune.epochs=2", "finetune.epochs=1", "latency=false", "figures=false")
# Every method whose scores read training samples, with what it needs to read them.
READERS = {"lrp": [], "taylor": [], "gradient": [], "snip": [], "grasp": [], "wanda": [], "sparsegpt": [],
           "crespr": ["method.criterion=obd", "model.hidden=[32,16]"]}


def _masks_and_weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "pruned.pt", weights_only=True)["model"]


def _score_on_two_ranks(rank: int, folder: str) -> None:
    """One rank: prune a fresh network with every data-reading method, noting what the rank measured before the
    ranks' reduction and the masks after it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from prunekit.config import config_dir, register_schemas
    from prunekit.data import load_dataset
    from prunekit.data.view import DataView
    from prunekit.distributed import world
    from prunekit.pruning.masks import MaskSet
    from prunekit.pruning.methods import get_method_class
    from prunekit.state import ModelSpec

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    register_schemas()
    measured: list[str] = []
    average, sum_ = world.average, world.sum_

    def digest(tensors) -> str:
        return hashlib.sha256(b"".join(t.detach().double().numpy().tobytes() for t in tensors)).hexdigest()

    def before_average(scores, weight):
        measured.append(digest(scores[name] for name in sorted(scores)))
        return average(scores, weight)

    def before_sum(values):
        measured.append(digest(values))
        return sum_(values)

    world.average, world.sum_ = before_average, before_sum
    results = {}
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        for name, overrides in READERS.items():
            cfg = compose("train", overrides=[f"method={name}", *overrides])
            data = DataView(load_dataset(cfg.data, torch.device("cpu")))
            torch.manual_seed(0)
            spec = ModelSpec(OmegaConf.to_container(cfg.model, resolve=True), data.input_shape, data.num_classes)
            model = spec.build(torch.device("cpu"))
            masks = MaskSet(model, data.input_shape)
            measured.clear()
            get_method_class(name)(cfg.method, model, masks, data, 0).prune(0.5)
            results[name] = {"measured": measured[0], "masks": world.masks_digest(masks.buffers())}
    try:
        world.check_masks_agree({"0.weight_mask": torch.tensor([rank == 0])}, "in this test")
    except UserError as err:
        results["disagreement"] = str(err)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.mark.slow
def test_every_data_reading_method_measures_its_share_and_the_ranks_keep_the_same_masks(tmp_path):
    mp.start_processes(_score_on_two_ranks, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name in READERS:
        assert ranks[0][name]["measured"] != ranks[1][name]["measured"], name  # different samples per rank
        assert ranks[0][name]["masks"] == ranks[1][name]["masks"], name  # the same masks after the reduction
    for rank in ranks:  # masks that differ stop every rank with the same line
        assert "the ranks' masks differ in this test" in rank["disagreement"]


def _ranks_of(parent: int) -> list[int]:
    """The processes torch's launcher spawned for the command ``parent`` (its children running a spawn)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if int(stat[1]) == parent and "spawn_main" in cmdline:
                children.append(int(entry.name))
    return sorted(children)


@pytest.mark.slow
def test_a_sweep_of_one_and_two_ranks_trains_alike_and_a_killed_rank_resumes_to_the_same_numbers(cli, tmp_path):
    """Each job of a joblib sweep is a run, here one on one rank and one on two: the same masks, the same weights
    up to the order of the sums, and one run directory per job, written once, its tracker's files too. Then the
    two-rank job again, a rank killed and the run resumed (one test: the sweep's job is the uninterrupted run)."""
    # The sweep's folder absolute: joblib's workers outlive a test, in the folder of the test that started them.
    code, _, err = cli("train", "-m", *RUN, "distributed.nproc=1,2", "logger=tensorboard", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, err
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    one, two = (tmp_path / "sweep" / "0"), (tmp_path / "sweep" / "1")
    assert "distributed.nproc=2" in (two / ".hydra" / "overrides.yaml").read_text()
    first, second = _masks_and_weights(one), _masks_and_weights(two)
    assert first.keys() == second.keys()
    for key in first:
        if key.endswith("_mask"):  # the same masks, exactly
            assert torch.equal(first[key], second[key]), key
        else:  # the same weights, up to the order of the sums
            torch.testing.assert_close(first[key], second[key], atol=1e-5, rtol=1e-4)
    records = read_metrics(one), read_metrics(two)
    assert len(records[0]) == len(records[1])  # one line per epoch and event: written once, by rank 0
    for a, b in zip(*records):
        for key in ("train_loss", "val_loss", "val_accuracy", "density"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-4), key
    assert read_summary(two)["accuracy"] == pytest.approx(read_summary(one)["accuracy"], abs=1e-9)
    assert len(list((two / "tensorboard").iterdir())) == 1  # rank 0 alone logs to the trackers
    _kill_a_rank_and_resume(cli, tmp_path, read_summary(two))


def _kill_a_rank_and_resume(cli, tmp_path: Path, whole: dict) -> None:
    """The sweep's two-rank job run again and a rank killed (kill -9) in its dense stage: the run stops with one
    line and the command that continues it, and resume=true ends with the uninterrupted job's numbers."""
    run = (*RUN, "distributed.nproc=2")
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "prunekit", "train", *run, "hydra.run.dir=broken", "cache_dir=c2"]
    parent = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    last = tmp_path / "broken" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not (last.exists() and torch.load(last, weights_only=True)["epoch"] >= 3):
        assert parent.poll() is None and time.monotonic() < deadline, parent.communicate()
        time.sleep(0.05)
    ranks = _ranks_of(parent.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 1
    assert "rank 1 of 2 was killed by signal SIGKILL" in err and "continue with: prunekit train" in err
    assert not (tmp_path / "broken" / "summary.json").exists()
    code, _, err = cli("train", *run, "hydra.run.dir=broken", "cache_dir=c2", "resume=true")
    assert code == 0, err
    resumed = read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "val_accuracy", "density", "dense_accuracy"):
        assert resumed[key] == whole[key], key
