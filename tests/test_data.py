"""prunekit.data: every loader reads files written here in the real on-disk formats; batching and augmentation."""
from __future__ import annotations

import dataclasses
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

from conftest import IDX_NAMES, images, labels, require_data, write_cifar10, write_idx, write_mnist, write_pickle
from prunekit.config import AugmentConfig, DataConfig
from prunekit.data.caltech import Caltech101DataConfig
from prunekit.data.synthetic import SyntheticDataConfig
from prunekit.data import DATASETS, check_available, load_dataset
from prunekit.data import caltech as caltech_module
from prunekit.data.augment import CropFlip
from prunekit.errors import UserError

CPU = torch.device("cpu")


def data_cfg(schema=DataConfig, **values):
    return OmegaConf.structured(schema(**values))


# --- writers for the real formats (IDX and CIFAR-10 in conftest) ---------------------------------------


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for i, name in enumerate(["train", "test"]):
        batch = {"data": images(200, (3 * 32 * 32,), i), "fine_labels": list(labels(200, 100))}
        write_pickle(folder / name, {**batch, "coarse_labels": list(labels(200, 20))})
    write_pickle(folder / "meta", {"fine_label_names": [f"class{k}" for k in range(100)]})


def python2_batch(data: np.ndarray, label_key: str, batch_labels: list[int]) -> bytes:
    """A CIFAR batch pickled as torchvision's files are: Python 2's protocol 2, with numpy 1's global
    numpy.core.multiarray._reconstruct and the bytes as Python 2 str (which Python 3 reads as latin-1)."""
    def text(value: bytes) -> bytes:  # BINSTRING
        return b"T" + struct.pack("<i", len(value)) + value

    def number(value: int) -> bytes:  # BININT
        return b"J" + struct.pack("<i", value)

    dtype = (b"cnumpy\ndtype\n" + text(b"u1") + number(0) + number(1) + b"\x87R(" + number(3) + text(b"|") + b"NNN"
             + number(-1) + number(-1) + number(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + number(0) + b"\x85" + text(b"b")
             + b"\x87R(" + number(1) + number(data.shape[0]) + number(data.shape[1]) + b"\x86" + dtype + b"\x89"
             + text(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(number(label) for label in batch_labels) + b"e"
    return b"\x80\x02}(" + text(b"data") + array + text(label_key.encode()) + label_list + b"u."


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


def test_the_fingerprint_follows_the_samples_in_each_split(digits, tmp_path):
    assert len(digits.fingerprint) == 16 and int(digits.fingerprint, 16) >= 0
    assert load_dataset(data_cfg(name="digits", val_fraction=0.15), CPU).fingerprint == digits.fingerprint
    others = [load_dataset(data_cfg(name="digits", val_fraction=0.2), CPU),
              load_dataset(data_cfg(name="digits", val_fraction=0.15, classes=[0, 1]), CPU),
              dataclasses.replace(digits, test=dataclasses.replace(digits.test, y=digits.test.y.flip(0)))]
    assert len({digits.fingerprint, *(other.fingerprint for other in others)}) == 4


@pytest.mark.parametrize("values, named", [
    ({"name": "digits", "val_fraction": 0.999}, r"the train split holds no sample: data.val_fraction=0.999 moves all"),
    ({"name": "mnist", "classes": [7, 8]}, r"the test split holds no sample: .* none of data.classes=\[7, 8\]"),
])
def test_a_split_without_samples_is_refused(tmp_path, values, named):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / IDX_NAMES[3], np.asarray(labels(20, 5)))  # the test files hold classes 0..4 only
    with pytest.raises(UserError, match=named) as error:
        load_dataset(data_cfg(root=str(tmp_path), **values), CPU)
    assert "\n" not in str(error.value)


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
    assert all(entry.description and "\n" not in entry.description for entry in DATASETS.entries())
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


@pytest.mark.parametrize("name, file", [("fashion_mnist", IDX_NAMES[0]), ("mnist", IDX_NAMES[2])])
def test_idx_images_of_another_size_are_refused(tmp_path, name, file):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / file, images(40 if file == IDX_NAMES[0] else 20, (32, 32)))
    with pytest.raises(UserError, match=f"{file} holds 32x32 images but {name} images are 28x28") as error:
        load_dataset(data_cfg(name=name, root=str(tmp_path)), CPU)
    assert "\n" not in str(error.value)


def test_real_data_is_skipped_without_it_and_required_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert require_data(tmp_path, "how") == tmp_path
    with pytest.raises(pytest.skip.Exception, match="absent.*how"):
        require_data(tmp_path / "absent", "how")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="absent.*how.*CI=true"):
        require_data(tmp_path / "absent", "how")


def test_real_fashion_mnist(fashion_mnist):
    dataset = load_dataset(data_cfg(name="fashion_mnist", root=str(fashion_mnist)), CPU)
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


@pytest.mark.parametrize("written_by", ["python2", "protocol5"])
def test_cifar_batches_as_torchvision_and_numpy_2_write_them(tmp_path, written_by):
    folder = write_cifar10(tmp_path)
    data = images(10, (3 * 32 * 32,), 7)
    if written_by == "python2":  # torchvision's own files
        (folder / "test_batch").write_bytes(python2_batch(data, "labels", labels(10, 10)))
    else:  # saved again by numpy 2 at Python 3.14's default protocol: arrays rebuilt from a buffer
        (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels(10, 10)}, protocol=5))
    dataset = load_dataset(data_cfg(name="cifar10", root=str(tmp_path)), CPU)
    assert torch.equal(dataset.test.x, torch.from_numpy(data).view(10, 3, 32, 32))
    assert dataset.test.y.tolist() == labels(10, 10)


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
