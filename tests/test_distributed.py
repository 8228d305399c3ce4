"""One process's side of several ranks: each rank's share of a batch, the loss weighting that makes the ranks'
averaged gradients the global batch's, the collectives as identities in one process, BatchNorm made synchronised
and back, the SLURM environment, and what is refused before a run starts."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import TrainConfig
from prunekit.data import load_dataset
from prunekit.data.dataset import Shard
from prunekit.distributed import launch, world
from prunekit.distributed.parallel import replicated, synchronised_batchnorm
from prunekit.engine import train_step
from prunekit.errors import UserError


@pytest.fixture(scope="module")
def digits():
    from prunekit.data.registry import DATASETS

    cfg = OmegaConf.merge(OmegaConf.structured(DATASETS.get("digits").config), {"name": "digits"})
    return load_dataset(cfg, torch.device("cpu"))


def test_the_ranks_shares_of_a_pass_are_its_batches(digits):
    order = torch.Generator().manual_seed(3)
    whole = list(digits.batches("train", 100, shuffle=True, augment=False, generator=order))
    shares = [list(digits.batches("train", 100, shuffle=True, augment=False, shard=Shard(rank, 3),
                                  generator=torch.Generator().manual_seed(3))) for rank in range(3)]
    assert len(whole) == len(shares[0]) == digits.num_batches("train", 100)
    for index, (x, y) in enumerate(whole):
        # positions rank, rank + 3, ... of the batch, as torch's DistributedSampler deals them
        for rank in range(3):
            assert torch.equal(shares[rank][index][0], x[rank::3]) and torch.equal(shares[rank][index][1], y[rank::3])


def test_a_shard_takes_the_crops_of_its_own_positions(digits):
    import dataclasses

    padded = dataclasses.replace(digits, crop_padding=2, hflip=True)
    whole = next(padded.batches("train", 64, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1)))
    share = next(padded.batches("train", 64, shuffle=True, augment=True, generator=torch.Generator().manual_seed(1),
                                shard=Shard(1, 2)))
    assert torch.equal(share[0], whole[0][1::2])


def test_weighted_shares_average_to_the_gradient_of_the_global_batch():
    """DDP averages the ranks' gradients; with each rank's loss weighted by its share of the global batch times
    the ranks, the average is the mean loss's gradient even when a batch of 7 splits 4 + 3."""
    torch.manual_seed(0)
    model, x, y = nn.Linear(5, 3), torch.randn(7, 5), torch.randint(0, 3, (7,))
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    grads = []
    for rank in range(2):
        twin = copy.deepcopy(model)
        optimizer = torch.optim.SGD(twin.parameters(), lr=0.0)
        xs, ys = x[rank::2], y[rank::2]
        train_step(twin, optimizer, xs, ys, [], 1, share=len(ys) * 2 / len(y))
        grads.append([p.grad for p in twin.parameters()])
    for (a, b), expected in zip(zip(*grads), (p.grad for p in reference.parameters())):
        torch.testing.assert_close((a + b) / 2, expected)


def test_in_one_process_the_collectives_leave_everything_as_it_is():
    scores = {"a": torch.tensor([1.0, 2.0])}
    assert world.size() == 1 and world.rank() == 0 and world.is_main() and world.shard() is None
    assert world.average(scores, 5) is scores and world.sum_([scores["a"]])[0] is scores["a"]
    assert world.gather("x") == ["x"] and world.broadcast({"k": 1}) == {"k": 1}
    assert torch.equal(world.own_positions(torch.arange(5)), torch.arange(5)) and world.rank_seed(11) == 11
    world.check_masks_agree({"w": torch.ones(3, dtype=torch.bool)}, "after a step")  # one rank agrees with itself
    model = nn.Linear(2, 2)
    with replicated(model, [], sync_bn=False) as trained:
        assert trained is model


def test_every_rank_after_the_first_draws_noise_of_its_own(monkeypatch):
    seeds = set()
    for rank in range(3):
        monkeypatch.setattr(world, "rank", lambda rank=rank: rank)
        seeds.add(world.rank_seed(11))
    assert len(seeds) == 3 and 11 in seeds  # rank 0 draws what one process draws


def test_the_mask_digest_tells_masks_apart():
    ones = {"0.weight_mask": torch.ones(2, 3, dtype=torch.bool)}
    flipped = {"0.weight_mask": ones["0.weight_mask"].clone()}
    flipped["0.weight_mask"][1, 2] = False
    assert world.masks_digest(ones) == world.masks_digest({k: v.clone() for k, v in ones.items()})
    assert world.masks_digest(ones) != world.masks_digest(flipped)


def test_batchnorm_is_synchronised_in_place_and_made_back():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2), nn.BatchNorm1d(2))
    norm = model[1]
    norm.register_buffer("weight_mask", torch.ones(2, dtype=torch.bool))
    with synchronised_batchnorm(model):
        assert type(model[1]) is nn.SyncBatchNorm and type(model[3]) is nn.SyncBatchNorm and model[1] is norm
        assert model[1].process_group is None and hasattr(model[1], "weight_mask")
    assert type(model[1]) is nn.BatchNorm2d and type(model[3]) is nn.BatchNorm1d
    assert not hasattr(model[1], "process_group")


def _cfg(**distributed) -> OmegaConf:
    cfg = OmegaConf.structured(TrainConfig)
    cfg.device = "cpu"
    cfg.distributed = OmegaConf.merge(cfg.distributed, distributed)
    return cfg


@pytest.mark.parametrize("options, message", [
    ({"backend": "nccl", "nproc": 2}, "distributed.backend=nccl needs CUDA"),
    ({"sync_bn": True, "nproc": 2}, "distributed.sync_bn=true needs CUDA"),
])
def test_what_the_cpu_cannot_do_is_refused(options, message, monkeypatch):
    with pytest.raises(UserError, match=message):  # device=cpu: by the config, before the run
        launch.check_config(_cfg(**options))
    auto = _cfg(**options)
    auto.device = "auto"
    launch.check_config(auto)  # device=auto may find CUDA where the run starts: the machine decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=message):
        launch.check_machine(auto, 2)
    assert launch.backend(_cfg(nproc=2)) == "gloo"


def test_more_ranks_than_cuda_devices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = _cfg(nproc=4)
    cfg.device = "cuda"
    launch.check_machine(cfg, 2)
    with pytest.raises(UserError, match="distributed.nproc=4 but this machine has 2 CUDA devices"):
        launch.check_machine(cfg, 4)


def test_a_last_batch_with_fewer_samples_than_ranks_is_refused(monkeypatch):
    monkeypatch.setattr(world, "size", lambda: 4)
    world.check_batches(132, {"train.batch_size": 64, "prune.batch_size": 16})  # last batches of 4 and 4
    with pytest.raises(UserError, match="prune.batch_size=32 leaves 2 training sample"):
        world.check_batches(130, {"prune.batch_size": 32, "train.batch_size": 64})  # 130 = 2 x 64 + 2 (4 x 32 + 2)


def test_a_slurm_task_of_several_exports_its_rank_from_slurm(monkeypatch):
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "42", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1",
             "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "node7", "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert launch.slurm_rank() is None
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    try:
        assert launch.slurm_rank() == 1
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "1")
        assert os.environ["MASTER_ADDR"] == "node7" and int(os.environ["MASTER_PORT"]) > 0
    finally:
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
            os.environ.pop(name, None)
