"""The streaming data path (data.streaming, prunekit/data/streaming.py) over a small folder of JPEGs in ImageNet's
layout: the same batches, samples and run numbers as the in-memory path on the same files, shards that add up to
the global batch, crops that depend only on the generator and the position, and a fingerprint of the files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import read_metrics
from prunekit.data import load_dataset
from prunekit.data.dataset import SPLITS, Dataset, Shard
from prunekit.data.imagenet import ImageNetDataConfig
from prunekit.data.streaming import StreamingDataset
from prunekit.errors import UserError
from test_transfer import write_imagenet

CPU = torch.device("cpu")
WNIDS = ["n01", "n02", "n03"]
BATCH = 5  # 12 train, 6 val and 18 test images: last batches of 2, 1 and 3, and an empty share for rank 1 in val


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_imagenet(root, WNIDS, per_class=6)
    return root


def imagenet(root: Path, **values) -> Dataset | StreamingDataset:
    schema = OmegaConf.structured(ImageNetDataConfig(name="imagenet", root=str(root), image_size=16))
    return load_dataset(OmegaConf.merge(schema, {"val_fraction": 0.25, "workers": 0, **values}), CPU)


def seeded(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def equal(first: list, second: list) -> bool:
    return len(first) == len(second) and all(
        torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(first, second, strict=True))


def test_streaming_batches_and_samples_are_the_in_memory_ones(folder):
    memory = imagenet(folder, streaming=False)
    streamed = imagenet(folder, streaming=True, augment={"resized_crop": False})
    assert isinstance(memory, Dataset) and isinstance(streamed, StreamingDataset)
    for split in SPLITS:  # train shuffled with augment=True as training asks, but no augmentation configured
        kind = {"shuffle": split == "train", "augment": split == "train"}
        expected = list(memory.batches(split, BATCH, generator=seeded(), **kind))
        assert equal(list(streamed.batches(split, BATCH, generator=seeded(), **kind)), expected)
        assert streamed.num_batches(split, BATCH) == len(expected) and torch.equal(streamed.split(split).y,
                                                                                   memory.split(split).y)
        shares = [list(streamed.batches(split, BATCH, generator=seeded(), shard=Shard(rank, 2), **kind))
                  for rank in (0, 1)]
        for (x, y), *ranks in zip(expected, *shares, strict=True):  # rank r holds positions r, r + 2, ...
            assert equal(ranks, [(x[rank::2], y[rank::2]) for rank in (0, 1)])
        index = torch.tensor([4, 0, 5, 0])
        assert equal([streamed.samples(split, index)], [memory.samples(split, index)])
    assert (streamed.input_shape, streamed.num_classes, streamed.original_classes) == ((3, 16, 16), 3, [0, 1, 2])
    assert torch.equal(streamed.mean, memory.mean) and torch.equal(streamed.std, memory.std)


def test_crops_depend_on_the_generator_and_position_only(folder):
    def train(workers: int = 0, seed: int = 3, shard: Shard | None = None, augment: bool = True) -> list:
        data = imagenet(folder, streaming=True, workers=workers, augment={"hflip": True})
        return list(data.batches("train", BATCH, shuffle=True, augment=augment, generator=seeded(seed), shard=shard))

    state = torch.get_rng_state()
    first = train()
    assert equal(first, train()) and equal(first, train(workers=2))  # any number of worker processes
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator (dropout's) is left as it was
    ranks = [train(shard=Shard(rank, 2)) for rank in (0, 1)]  # any number of ranks
    assert all(equal([(x[rank::2], y[rank::2]) for x, y in first], ranks[rank]) for rank in (0, 1))
    other, plain = train(seed=4), train(augment=False)
    assert not equal(first, other)
    assert all(torch.equal(y, v) and not torch.equal(x, u) for (x, y), (u, v) in zip(first, plain, strict=True))


def test_the_fingerprint_names_the_files_and_their_splits(tmp_path):
    write_imagenet(tmp_path, WNIDS, per_class=4)
    first = imagenet(tmp_path, streaming=True).fingerprint
    assert imagenet(tmp_path, streaming=True).fingerprint == first
    assert imagenet(tmp_path, streaming=True, val_fraction=0.5).fingerprint != first  # other splits
    assert imagenet(tmp_path, streaming=True, classes=[0, 1, 2]).fingerprint != first  # classes recorded
    image = tmp_path / "imagenet" / "val" / "n02" / "n02_1.JPEG"
    image.write_bytes(image.read_bytes() + b"\0")  # another file of that name
    assert imagenet(tmp_path, streaming=True).fingerprint != first


def test_the_path_follows_data_streaming(tmp_path):
    write_imagenet(tmp_path, WNIDS, per_class=2)
    assert isinstance(imagenet(tmp_path, streaming="auto"), StreamingDataset)  # every class: streamed
    assert isinstance(imagenet(tmp_path, streaming="auto", classes=[2, 0]), Dataset)  # a selection fits
    assert isinstance(imagenet(tmp_path, streaming=True, classes=[2, 0]), StreamingDataset)
    with pytest.raises(UserError, match="data.streaming='yes' is not allowed"):
        imagenet(tmp_path, streaming="yes")
    with pytest.raises(UserError, match="data.augment.crop_padding=4 .* streaming"):
        imagenet(tmp_path, streaming=True, augment={"crop_padding": 4})


def test_an_unreadable_image_is_named_in_one_line(tmp_path):
    write_imagenet(tmp_path, WNIDS, per_class=2)
    (tmp_path / "imagenet" / "val" / "n03" / "n03_1.JPEG").write_bytes(b"\xff\xd8 not a jpeg")
    data = imagenet(tmp_path, streaming=True, workers=2)
    with pytest.raises(UserError, match=r"^\S*n03_1.JPEG: not a readable image \([^\n]*\); replace or delete it$"):
        list(data.batches("test", BATCH, shuffle=False, augment=False))


@pytest.mark.slow
def test_a_streaming_run_ends_with_the_in_memory_numbers(cli, folder):
    runs = {}
    for streaming in ("true", "false"):
        code, _, err = cli("train", "dataset=imagenet", f"data.root={folder}", f"data.streaming={streaming}",
                           "data.workers=2", "data.augment.resized_crop=false", "data.augment.hflip=false",
                           "data.image_size=16", "model=cnn", "method=magnitude", "train.epochs=1", "prune.epochs=0",
                           "finetune.epochs=1", "latency=false", "figures=false", f"hydra.run.dir=run_{streaming}")
        assert code == 0, err
        runs[streaming] = [{key: value for key, value in row.items() if key not in ("seconds", "key")}
                           for row in read_metrics(Path(f"run_{streaming}"))]
    assert runs["true"] == runs["false"] and runs["true"][-1]["event"] == "done"
    assert {row.get("stage") for row in runs["true"]} >= {"dense", "finetune"}


@pytest.mark.slow
def test_two_ranks_stream_the_one_rank_batches_and_crops(cli, folder):
    runs = {}
    for ranks in (1, 2):  # an MLP: no BatchNorm, whose per-rank statistics would differ
        code, _, err = cli("train", f"distributed.nproc={ranks}", "dataset=imagenet", f"data.root={folder}",
                           "data.streaming=true", "data.workers=1", "data.augment.hflip=true", "data.image_size=16",
                           "model=mlp", "model.hidden=[32]", "method=magnitude", "train.epochs=2", "prune.epochs=0",
                           "finetune.epochs=1", "train.batch_size=8", "finetune.batch_size=8", "latency=false",
                           "figures=false", f"hydra.run.dir=ranks_{ranks}")
        assert code == 0, err
        runs[ranks] = [{key: value for key, value in row.items() if key not in ("seconds", "key")}
                       for row in read_metrics(Path(f"ranks_{ranks}"))]
    assert len(runs[2]) == len(runs[1]) and runs[2][-1]["event"] == "done"
    for one, two in zip(runs[1], runs[2], strict=True):  # the same up to the order of floating-point sums
        assert two == pytest.approx(one, rel=1e-5)
