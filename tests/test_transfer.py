"""Transfer learning and class subsets: data.classes / data.class_subset, dataset=imagenet, model.weights and
model.pretrained, with the classifier keeping the selected classes' rows only where the file's classes are known."""
from __future__ import annotations

import os
import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import read_metrics
from prunekit.cache import dense_key
from prunekit.cli import main
from prunekit.config import DataConfig
from prunekit.data.imagenet import ImageNetDataConfig
from prunekit.models.adapt import ConvNetConfig
from prunekit.data import load_dataset
from prunekit.data.imagenet import MEAN, STD
from prunekit.errors import UserError
from prunekit.models import build_model
from prunekit.models.weights import start_from

CPU = torch.device("cpu")
SMALL_RUN = ("dataset=digits", "model.hidden=[32]", "latency=false", "figures=false")
NO_TRAINING = ("train.epochs=0", "prune.epochs=0", "finetune.epochs=0")


def one_line_error(code: int, out: str, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, err
    return lines[0]


def digits(seed: int = 0, **values):
    return load_dataset(OmegaConf.structured(DataConfig(name="digits", **values)), CPU, seed=seed)


# --- class selection ----------------------------------------------------------------------------------


def test_classes_keep_those_images_relabelled_in_the_order_given():
    full, kept = digits(), digits(classes=[7, 3, 5])
    assert kept.num_classes == 3 and kept.classes == [7, 3, 5] and kept.total_classes == 10
    for new, old in enumerate([7, 3, 5]):
        assert torch.equal(kept.test.x[kept.test.y == new], full.test.x[full.test.y == old])
        for split in ("train", "val"):  # the validation split is carved per class, so its counts are the same
            assert int((kept.split(split).y == new).sum()) == int((full.split(split).y == old).sum())
    assert sorted(kept.train.y.unique().tolist()) == [0, 1, 2]


def test_class_subset_is_drawn_with_the_seed():
    draws = [digits(seed, class_subset=3).classes for seed in (0, 0, 1, 2, 3)]
    assert draws[0] == draws[1] and len(draws[0]) == 3 and draws[0] == sorted(draws[0])
    assert len({tuple(d) for d in draws}) > 2


@pytest.mark.parametrize("args, named", [
    (["data.classes=[1,2]", "data.class_subset=3"], "both"),
    (["data.classes=[3,12]"], "class 12"),
    (["data.classes=[3,5,3]"], "class 3 more than once"),
    (["data.classes=[4]"], "fewer than two"),
    (["data.class_subset=11"], "only 10 classes"),
])
def test_bad_class_selection_exits_2_with_one_line(cli, tmp_path, args, named):
    line = one_line_error(*cli("train", "dataset=digits", *args, "hydra.run.dir=run"))
    assert named in line and not (tmp_path / "run").exists()


# --- dataset=imagenet -----------------------------------------------------------------------------------


def write_imagenet(root: Path, wnids: list[str], per_class: int = 3) -> Path:
    """ImageNet's folder layout with a few small JPEGs of random sizes per class in train and val."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in wnids:
            (root / "imagenet" / split / wnid).mkdir(parents=True)
            for k in range(per_class):
                size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3)
                Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8)).save(
                    root / "imagenet" / split / wnid / f"{wnid}_{k}.JPEG")
    return root / "imagenet"


def imagenet_cfg(root: Path, **values):
    return OmegaConf.structured(ImageNetDataConfig(name="imagenet", root=str(root), image_size=16,
                                                   **{"streaming": False, **values}))


def test_imagenet_reads_only_the_selected_class_folders(tmp_path):
    folder = write_imagenet(tmp_path, ["n02", "n01", "n03", "n04"])
    (folder / "train" / "n04" / "n04_0.JPEG").write_bytes(b"\xff\xd8 not a jpeg")  # never read below
    data = load_dataset(imagenet_cfg(tmp_path, classes=[2, 0]), CPU)
    assert data.classes == [2, 0] and data.total_classes == 4 and data.input_shape == (3, 16, 16)
    assert len(data.train) + len(data.val) == 6 and len(data.test) == 6  # train from train, test from val
    assert torch.allclose(data.mean, torch.tensor(MEAN)) and torch.allclose(data.std, torch.tensor(STD))
    assert {p.name for p in (folder / "prunekit_cache_16" / "train").iterdir()} == {"n01.pt", "n03.pt"}
    with pytest.raises(UserError, match="n04_0.JPEG: not a readable image"):
        load_dataset(imagenet_cfg(tmp_path), CPU)


def test_imagenet_keeps_the_aspect_ratio_and_crops_the_centre(tmp_path):
    folder = write_imagenet(tmp_path, ["n01", "n02"], per_class=1)
    stripes = np.zeros((32, 64, 3), dtype=np.uint8)  # red, then green over the middle half, then blue
    stripes[:, :16, 0], stripes[:, 16:48, 1], stripes[:, 48:, 2] = 255, 255, 255
    Image.fromarray(stripes).save(folder / "val" / "n01" / "n01_0.JPEG", quality=95)
    data = load_dataset(imagenet_cfg(tmp_path, val_fraction=0.0), CPU)
    red, green, blue = data.test.x[data.test.y == 0][0].float().mean(dim=(1, 2)).tolist()
    assert green > 200 and red < 40 and blue < 40  # stretched to a square, a quarter would be red and blue


def test_imagenet_missing_folders_name_them(tmp_path):
    with pytest.raises(UserError, match="imagenet/train not found"):
        load_dataset(imagenet_cfg(tmp_path), CPU)
    folder = write_imagenet(tmp_path, ["n01", "n02"])
    (folder / "val" / "n09").mkdir()
    with pytest.raises(UserError, match="n09 is not a class of"):
        load_dataset(imagenet_cfg(tmp_path), CPU)


# --- model.weights ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A digits run (MLP 64-32-10) whose checkpoints/dense.pt the runs below start from."""
    root = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNEKIT_CACHE", str(root / "cache"))
        main(["train", *SMALL_RUN, "train.epochs=1", "prune.epochs=1", "finetune.epochs=0",
              f"hydra.run.dir={root / 'run'}"])
    assert (root / "run" / "checkpoints" / "dense.pt").is_file()
    return root / "run"


def dense(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "dense.pt", weights_only=True)


@pytest.mark.slow
def test_weights_of_a_run_keep_the_rows_of_the_selected_classes(cli, tmp_path, source_run):
    weights = source_run / "checkpoints" / "dense.pt"
    code, out, err = cli("train", *SMALL_RUN, *NO_TRAINING, "data.classes=[3,1,2]", f"model.weights={weights}",
                         "hydra.run.dir=subset")
    assert code == 0, err
    assert "classifier keeps rows 3, 1, 2 of the file" in out
    started, given = dense(tmp_path / "subset"), dense(source_run)
    assert torch.equal(started["fc1.weight"], given["fc1.weight"])
    assert torch.equal(started["fc2.weight"], given["fc2.weight"][[3, 1, 2]])
    assert torch.equal(started["fc2.bias"], given["fc2.bias"][[3, 1, 2]])
    event = next(r for r in read_metrics(tmp_path / "subset") if r.get("event") == "start_weights")
    assert event["rows"] == [3, 1, 2]
    assert json.loads((tmp_path / "subset" / "summary.json").read_text())["classes"] == [3, 1, 2]
    code, out, err = cli("train", *SMALL_RUN, *NO_TRAINING, f"model.weights={weights}", "hydra.run.dir=whole")
    assert code == 0 and "classifier loaded whole" in out, err
    assert torch.equal(dense(tmp_path / "whole")["fc2.weight"], given["fc2.weight"])


@pytest.mark.slow
def test_weights_of_unknown_classes_replace_the_classifier(cli, tmp_path, source_run):
    given = dense(source_run)
    outside = tmp_path / "dense.pt"  # the same file outside its run directory: its classes are unknown
    shutil.copy(source_run / "checkpoints" / "dense.pt", outside)
    code, out, err = cli("train", *SMALL_RUN, *NO_TRAINING, "data.classes=[1,2,3]", f"model.weights={outside}",
                         "hydra.run.dir=outside")
    assert code == 0 and "classifier replaced for 3 classes" in out, err
    started = dense(tmp_path / "outside")
    assert torch.equal(started["fc1.weight"], given["fc1.weight"])
    assert started["fc2.weight"].shape == (3, 32) and not torch.equal(started["fc2.weight"], given["fc2.weight"][1:4])
    # another dataset with samples of the same size (64 features): the body fits, the classes are others
    code, out, err = cli("train", *SMALL_RUN, *NO_TRAINING, "dataset=synthetic", "data.features=64",
                         f"model.weights={source_run / 'checkpoints' / 'dense.pt'}", "hydra.run.dir=synthetic")
    assert code == 0 and "trained on digits, not synthetic" in out, err
    assert dense(tmp_path / "synthetic")["fc2.weight"].shape == (4, 32)


@pytest.mark.slow
def test_bad_weights_exit_2_with_one_line(cli, tmp_path, source_run):
    weights = source_run / "checkpoints" / "dense.pt"
    line = one_line_error(*cli("train", *SMALL_RUN, "model.hidden=[16]", f"model.weights={weights}",
                               "hydra.run.dir=run"))
    assert str(weights) in line and "fc1.weight is [32, 64] in the file but [16, 64] here" in line
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    for path, named in [("notes.txt", "not a file written by torch.save"), ("module.pt", "state_dict()"),
                        ("absent.pt", "no such file")]:
        assert named in one_line_error(*cli("train", *SMALL_RUN, f"model.weights={path}", "hydra.run.dir=run"))
    line = one_line_error(*cli("train", "model=resnet18", "model.variant=imagenet", "model.pretrained=true",
                               f"model.weights={weights}", "hydra.run.dir=run"))
    assert "set one of them" in line
    assert not (tmp_path / "run").exists()


def test_dense_cache_key_follows_the_content_of_the_weights_file(tmp_path, source_run):
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    shutil.copy(source_run / "checkpoints" / "dense.pt", first)
    shutil.copy(first, second)

    def key(path: Path) -> str:
        cfg = OmegaConf.create({"data": {"name": "digits", "root": "x", "download": False},
                                "model": {"name": "mlp", "weights": str(path)}, "train": {}, "seed": 0})
        return dense_key(cfg, CPU, "d")

    assert key(first) == key(second)
    state = torch.load(second, weights_only=True)
    torch.save({**state, "fc2.bias": state["fc2.bias"] + 1}, second)
    assert key(first) != key(second)


# --- model.pretrained -----------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """torchvision's ResNet-18 ImageNet file, with random weights, in an otherwise empty torch hub cache."""
    import torchvision

    from prunekit.models.pretrained import weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    state = torchvision.models.resnet18().state_dict()
    path = weights_path(torchvision.models.ResNet18_Weights.DEFAULT)
    os.makedirs(os.path.dirname(path))
    torch.save(state, path)
    return state


def pretrained_start(data):
    cfg = OmegaConf.structured(ConvNetConfig(name="resnet18", variant="imagenet", pretrained=True))
    model = build_model(cfg, data.input_shape, data.num_classes)
    return model, start_from(model, cfg, data)


def test_pretrained_keeps_the_rows_of_imagenet_classes(tmp_path, hub):
    folder = write_imagenet(tmp_path, ["n00000005", "n00000998"], per_class=2)
    for k in range(1000):  # the other 998 classes of ImageNet, never read for a subset
        (folder / "train" / f"n{k:08d}").mkdir(exist_ok=True)
    model, start = pretrained_start(load_dataset(imagenet_cfg(tmp_path, classes=[998, 5]), CPU))
    assert start.rows == [998, 5] and torch.equal(model.fc.weight, hub["fc.weight"][[998, 5]])
    assert torch.equal(model.fc.bias, hub["fc.bias"][[998, 5]])
    assert torch.equal(model.layer1[0].conv1.weight, hub["layer1.0.conv1.weight"])


def test_pretrained_replaces_the_classifier_for_other_classes(tmp_path, hub):
    model, start = pretrained_start(digits(classes=[1, 2, 3]))
    assert start.rows is None and "digits classes are not ImageNet's" in start.note
    assert model.fc.weight.shape == (3, 512) and not torch.equal(model.fc.weight, hub["fc.weight"][1:4])
    write_imagenet(tmp_path, ["n01", "n02", "n03"], per_class=2)  # 3 wnid folders: labels are not ImageNet's rows
    model, start = pretrained_start(load_dataset(imagenet_cfg(tmp_path), CPU))
    assert start.rows is None and "1000 rows but there are 3 ImageNet classes" in start.note
