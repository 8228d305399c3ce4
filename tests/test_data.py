"""prunekit.data: every loader reads files written here in the real on-disk formats; batching and augmentation."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from prunekit.config import AugmentConfig, Caltech101DataConfig, DataConfig, SyntheticDataConfig
from prunekit.data import DATASETS, check_available, load_dataset
from prunekit.data import caltech as caltech_module
from prunekit.data.augment import CropFlip
from prunekit.errors import UserError

CPU = torch.device("cpu")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def data_cfg(schema=DataConfig, **values):
    return OmegaConf.structured(schema(**values))


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n: int, classes: int) -> np.ndarray:
    return (np.arange(n) % classes).astype(np.uint8)


# --- writers for the real formats -------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian uint32 sizes, then the data."""
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_mnist(folder: Path, gz: bool, n_train: int = 40, n_test: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [images(n_train, (28, 28)), labels(n_train, 10), images(n_test, (28, 28), 1), labels(n_test, 10)]
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(folder / (name + ".gz" if gz else name), array)


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj))


def write_cifar10(root: Path, per_batch: int = 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {"data": images(per_batch, (3 * 32 * 32,), i), "labels": list(labels(per_batch, 10))}
        write_pickle(folder / name, batch)
    write_pickle(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    return folder


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for i, name in enumerate(["train", "test"]):
        batch = {"data": images(200, (3 * 32 * 32,), i), "fine_labels": list(labels(200, 100))}
        write_pickle(folder / name, {**batch, "coarse_labels": list(labels(200, 20))})
    write_pickle(folder / "meta", {"fine_label_names": [f"class{k}" for k in range(100)]})


def write_caltech(root: Path, per_class: int = 5) -> Path:
    folder = root / "caltech101" / "101_ObjectCategories"
    rng = np.random.default_rng(0)
    for name in ["BACKGROUND_Google", "accordion", "airplanes", "ant"]:
        (folder / name).mkdir(parents=True)
        for k in range(1, per_class + 1):
            size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
            channels = () if k == 1 else (3,)  # a grey JPEG must come out as RGB too
            pixels = rng.integers(0, 256, size=size[::-1] + channels, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"image_{k:04d}.jpg")
    return folder


# --- scikit-learn sets and the Dataset API ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset(data_cfg(name="digits", val_fraction=0.15), CPU)


def test_digits_shapes_and_labels(digits):
    assert (digits.num_classes, digits.input_shape, digits.is_image) == (10, (1, 8, 8), True)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == pytest.approx(0.2 * 1797, abs=5)
    assert digits.train.x.dtype == torch.uint8 and digits.train.y.dtype == torch.int64
    assert int(digits.train.x.max()) == 255 and int(digits.train.x.min()) == 0
    assert set(digits.test.y.tolist()) == set(range(10))


def test_splits_are_fixed(digits):
    again = load_dataset(data_cfg(name="digits", val_fraction=0.15), CPU)
    for name in ("train", "val", "test"):
        assert torch.equal(digits.split(name).y, again.split(name).y)
        assert torch.equal(digits.split(name).x, again.split(name).x)


def test_batches_are_normalised(digits):
    x = torch.cat([x for x, _ in digits.batches("train", 100, shuffle=False, augment=False)])
    assert x.dtype == torch.float32 and x.shape == (len(digits.train), 1, 8, 8)
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, abs=1e-3)
    assert digits.num_batches("train", 100) == -(-len(digits.train) // 100)
    sizes = [len(y) for _, y in digits.batches("train", 100, shuffle=True, augment=False)]
    assert sum(sizes) == len(digits.train) and sizes[-1] == len(digits.train) % 100  # last partial batch kept


def order(dataset, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([y for _, y in dataset.batches("train", 64, shuffle=True, augment=True, generator=generator)])


def test_shuffle_follows_the_generator(digits):
    first = list(digits.batches("train", 64, shuffle=True, augment=False, generator=torch.Generator().manual_seed(3)))
    again = list(digits.batches("train", 64, shuffle=True, augment=False, generator=torch.Generator().manual_seed(3)))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(order(digits, 3), order(digits, 4))


def test_augmentation_matches_a_per_sample_reference(digits):
    generator = torch.Generator().manual_seed(7)
    padded_digits = dataclasses.replace(digits, crop_padding=2, hflip=True)
    batches = padded_digits.batches("train", 50, shuffle=False, augment=True, generator=generator)
    augmented = torch.cat([x for x, _ in batches])
    plain = torch.cat([x for x, _ in digits.batches("train", 50, shuffle=False, augment=False)])
    assert augmented.shape == plain.shape and not torch.equal(augmented, plain)
    params = CropFlip.draw(len(digits.train), 2, True, torch.Generator().manual_seed(7), CPU)
    for i in range(0, len(digits.train), 97):
        padded = F.pad(digits.train.x[i].float(), (2, 2, 2, 2))
        top, left = int(params.top[i]), int(params.left[i])
        expected = padded[:, top : top + 8, left : left + 8]
        if params.flip[i]:
            expected = expected.flip(-1)
        expected = (expected / 255 - digits.mean.view(-1, 1, 1)) / digits.std.view(-1, 1, 1)
        torch.testing.assert_close(augmented[i], expected)


def test_augment_is_for_train_only(digits):
    with pytest.raises(ValueError, match="train"):
        next(digits.batches("test", 10, shuffle=False, augment=True))


def test_empty_validation_split():
    dataset = load_dataset(data_cfg(name="digits", val_fraction=0.0), CPU)
    assert len(dataset.val) == 0 and dataset.num_batches("val", 32) == 0
    assert list(dataset.batches("val", 32, shuffle=True, augment=False)) == []
    assert dataset.val.x.shape[1:] == (1, 8, 8)


def test_synthetic_table_and_image():
    table = load_dataset(data_cfg(SyntheticDataConfig, name="synthetic", samples=500), CPU)
    assert (table.input_shape, table.is_image, table.num_classes, len(table.test)) == ((16,), False, 4, 100)
    assert table.train.x.dtype == torch.float32 and table.mean.shape == (16,)
    x = torch.cat([x for x, _ in table.batches("train", 128, shuffle=False, augment=False)])
    torch.testing.assert_close(x.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    image = load_dataset(data_cfg(SyntheticDataConfig, name="synthetic", samples=500, shape=[1, 4, 4]), CPU)
    assert (image.input_shape, image.is_image) == ((1, 4, 4), True)
    torch.testing.assert_close(image.train.x.flatten(1), table.train.x)  # the same fixed data


def test_synthetic_rejects_bad_values():
    with pytest.raises(UserError, match=r"data.shape=\[1, 3, 3\]"):
        check_available(data_cfg(SyntheticDataConfig, name="synthetic", shape=[1, 3, 3]))
    with pytest.raises(UserError, match="informative=1"):
        load_dataset(data_cfg(SyntheticDataConfig, name="synthetic", informative=1), CPU)
    tabular_with_crop = data_cfg(SyntheticDataConfig, name="synthetic", augment=AugmentConfig(crop_padding=2))
    with pytest.raises(UserError, match="tabular"):
        load_dataset(tabular_with_crop, CPU)


def test_unknown_name_lists_the_registry():
    assert all(spec.description and "\n" not in spec.description for spec in DATASETS.values())
    with pytest.raises(UserError, match="caltech101"):
        load_dataset(data_cfg(name="svhn"), CPU)


# --- MNIST family: IDX files --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_plain_folder(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    dataset = load_dataset(data_cfg(name="fashion_mnist", root=str(tmp_path), val_fraction=0.25), CPU)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (30, 10, 20)
    assert dataset.input_shape == (1, 28, 28) and dataset.num_classes == 10
    expected = torch.from_numpy(images(20, (28, 28), 1)).unsqueeze(1)
    assert torch.equal(dataset.test.x, expected)


def test_idx_torchvision_layout(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    dataset = load_dataset(data_cfg(name="mnist", root=str(tmp_path)), CPU)
    assert len(dataset.train) + len(dataset.val) == 40 and len(dataset.test) == 20


def test_idx_missing_names_the_path(tmp_path):
    cfg = data_cfg(name="fashion_mnist", root=str(tmp_path / "nowhere"))
    for call in (lambda: check_available(cfg), lambda: load_dataset(cfg, CPU)):
        with pytest.raises(UserError, match="nowhere.*dataset-fashion-mnist") as error:
            call()
        assert "\n" not in str(error.value)


def test_idx_download_failure_is_a_user_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got: <urlopen error>")

    monkeypatch.setattr("torchvision.datasets.MNIST.download", offline)
    with pytest.raises(UserError, match=r"download to .*MNIST.raw failed \(Error downloading") as error:
        load_dataset(data_cfg(name="mnist", root=str(tmp_path), download=True), CPU)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"\x00\x00\x08\x01" + p.read_bytes()[4:]), "bad IDX magic"),
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    ],
)
def test_idx_corrupt_raw_file(tmp_path, damage, message):
    write_mnist(tmp_path, gz=False)
    damage(tmp_path / IDX_NAMES[0])
    with pytest.raises(UserError, match=f"{IDX_NAMES[0]}.*{message}"):
        load_dataset(data_cfg(name="mnist", root=str(tmp_path)), CPU)


@pytest.mark.parametrize("cut", [lambda b: b[: len(b) // 2], lambda b: b"garbage" + b[7:]])
def test_idx_corrupt_gzip(tmp_path, cut):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / (IDX_NAMES[2] + ".gz")
    path.write_bytes(cut(path.read_bytes()))
    with pytest.raises(UserError, match=f"{IDX_NAMES[2]}.gz.*damaged"):
        load_dataset(data_cfg(name="mnist", root=str(tmp_path)), CPU)


@pytest.mark.parametrize("name, n", [(IDX_NAMES[1], 40), (IDX_NAMES[3], 20)])
def test_idx_labels_out_of_range_names_the_labels_file(tmp_path, name, n):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / name, np.full(n, 12, dtype=np.uint8))
    with pytest.raises(UserError, match=f"{name}: labels span 12..12 but the classes are 0..9") as error:
        load_dataset(data_cfg(name="mnist", root=str(tmp_path)), CPU)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    dataset = load_dataset(data_cfg(name="fashion_mnist", root=str(FASHION_MNIST)), CPU)
    assert len(dataset.train) + len(dataset.val) == 60000 and len(dataset.test) == 10000
    assert len(dataset.val) == 6000 and dataset.num_classes == 10 and dataset.input_shape == (1, 28, 28)
    assert torch.bincount(dataset.test.y).tolist() == [1000] * 10
    assert 0.25 < float(dataset.mean) < 0.32  # the published Fashion-MNIST mean is 0.286


# --- CIFAR: torchvision's pickled batches -------------------------------------------------------------


def test_cifar10(tmp_path):
    write_cifar10(tmp_path)
    augment = AugmentConfig(crop_padding=4, hflip=True)
    dataset = load_dataset(data_cfg(name="cifar10", root=str(tmp_path), augment=augment), CPU)
    assert (len(dataset.train) + len(dataset.val), len(dataset.test)) == (50, 10)
    assert dataset.input_shape == (3, 32, 32) and dataset.mean.shape == (3,)
    first = images(10, (3 * 32 * 32,), 5)[0].reshape(3, 32, 32)  # test_batch, stored channels first
    assert torch.equal(dataset.test.x[0], torch.from_numpy(first))
    x, y = next(dataset.batches("train", 16, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)


def test_cifar100(tmp_path):
    write_cifar100(tmp_path)
    dataset = load_dataset(data_cfg(name="cifar100", root=str(tmp_path)), CPU)
    assert dataset.num_classes == 100 and len(dataset.test) == 200


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py.data_batch_1 not found"):
        check_available(data_cfg(name="cifar10", root=str(tmp_path)))
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cifar-10-batches-py.data_batch_3: cannot be read") as error:
        load_dataset(data_cfg(name="cifar10", root=str(tmp_path)), CPU)
    assert "\n" not in str(error.value)


def relabel(path: Path, count: int) -> None:
    """Rewrite a CIFAR-10 batch with its images kept and ``count`` labels."""
    batch = pickle.loads(path.read_bytes())
    write_pickle(path, {**batch, "labels": list(labels(count, 10))})


def test_cifar10_batch_with_fewer_labels_than_images(tmp_path):
    folder = write_cifar10(tmp_path)
    relabel(folder / "data_batch_3", 5)
    with pytest.raises(UserError, match="cifar-10-batches-py.data_batch_3 holds 10 images but 5 labels") as error:
        load_dataset(data_cfg(name="cifar10", root=str(tmp_path)), CPU)
    assert "\n" not in str(error.value) and "replace it" in str(error.value)


def test_cifar10_misaligned_batches_with_matching_totals(tmp_path):
    # One label too many in one file and one too few in the next: the totals agree, the labels would shift.
    folder = write_cifar10(tmp_path)
    relabel(folder / "data_batch_1", 11)
    relabel(folder / "data_batch_2", 9)
    with pytest.raises(UserError, match="cifar-10-batches-py.data_batch_1 holds 10 images but 11 labels"):
        load_dataset(data_cfg(name="cifar10", root=str(tmp_path)), CPU)


def test_cifar100_labels_out_of_range(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    batch = pickle.loads(path.read_bytes())
    write_pickle(path, {**batch, "fine_labels": [100] + batch["fine_labels"][1:]})
    with pytest.raises(UserError, match="cifar-100-python.test: labels span 0..100 but the classes are 0..99") as error:
        load_dataset(data_cfg(name="cifar100", root=str(tmp_path)), CPU)
    assert "\n" not in str(error.value)


# --- Caltech101: folders of JPEGs, resized once and cached ---------------------------------------------


def test_caltech101_split_and_cache(tmp_path, monkeypatch):
    folder = write_caltech(tmp_path)
    cfg = data_cfg(Caltech101DataConfig, name="caltech101", root=str(tmp_path), image_size=16, val_fraction=0.0)
    dataset = load_dataset(cfg, CPU)
    assert dataset.num_classes == 3 and dataset.input_shape == (3, 16, 16)  # BACKGROUND_Google left out
    assert torch.bincount(dataset.test.y).tolist() == [1, 1, 1]  # round(0.2 * 5) of every class
    cache = folder.parent / "prunekit_cache_16.pt"
    assert cache.is_file() and not list(folder.parent.glob("*.tmp"))

    def no_resize(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(caltech_module, "_resize_all", no_resize)
    again = load_dataset(cfg, CPU)
    assert torch.equal(again.train.x, dataset.train.x) and torch.equal(again.test.y, dataset.test.y)
    cfg.split_seed = 1
    other_split = load_dataset(cfg, CPU)
    assert not torch.equal(other_split.test.x, dataset.test.x)  # a new split, still from the cache
    monkeypatch.undo()
    Image.fromarray(images(1, (24, 24, 3))[0]).save(folder / "ant" / "image_0006.jpg")
    cfg.split_seed = 0
    grown = load_dataset(cfg, CPU)  # the folder changed: the cache is rebuilt
    assert len(grown.train) + len(grown.test) == 16


def test_caltech101_missing_and_corrupt(tmp_path):
    cfg = data_cfg(Caltech101DataConfig, name="caltech101", root=str(tmp_path))
    with pytest.raises(UserError, match="101_ObjectCategories not found"):
        check_available(cfg)
    folder = write_caltech(tmp_path)
    (folder / "ant" / "image_0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="image_0002.jpg: not a readable image"):
        load_dataset(cfg, CPU)
    assert not list(folder.parent.glob("prunekit_cache_*"))
    os.remove(folder / "ant" / "image_0002.jpg")
    assert load_dataset(cfg, CPU).num_classes == 3


def test_caltech101_cache_misaligned_with_its_file_list_is_rebuilt(tmp_path):
    folder = write_caltech(tmp_path)
    cfg = data_cfg(Caltech101DataConfig, name="caltech101", root=str(tmp_path), image_size=16, val_fraction=0.0)
    dataset = load_dataset(cfg, CPU)
    cache = folder.parent / "prunekit_cache_16.pt"
    cached = torch.load(cache, weights_only=True)
    torch.save({**cached, "x": cached["x"][1:]}, cache)  # one image short: every label would shift by one
    again = load_dataset(cfg, CPU)
    assert torch.equal(again.train.x, dataset.train.x) and torch.equal(again.test.x, dataset.test.x)
    assert len(torch.load(cache, weights_only=True)["x"]) == 15
