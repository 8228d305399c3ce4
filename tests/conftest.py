"""Shared helpers: run the real CLI in-process, in a scratch directory, with a scratch dense cache; write
small datasets in their real formats; find the real data or say why a test cannot run."""
import gzip
import importlib.util
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.cli import main

# One thread: the suite's networks are small, and on a shared two-core machine a second thread mostly
# waits for a core, which made multi-threaded runs ten times slower in our measurements.
torch.set_num_threads(1)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def require_data(path: Path, how: str) -> Path:
    """``path``, a folder of real data; without it the calling test is skipped with a reason that says
    ``how`` to get the data, or fails when the CI environment variable is set: CI (.ci/run) installs the
    data, so there a missing folder is a broken setup, not an optional test."""
    if path.is_dir():
        return path
    reason = f"real data not found at {path} ({how})"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}; CI={os.environ['CI']} requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def fashion_mnist() -> Path:
    """Debian's Fashion-MNIST folder (see :func:`require_data`)."""
    return require_data(FASHION_MNIST, "apt-get install dataset-fashion-mnist, as .ci/run does")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Call ``prunekit`` with arguments; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    parallel = []

    def run(*args: str):
        parallel.extend(a for a in args if a.startswith("hydra/launcher=joblib"))
        try:
            code = main(list(args))
        except SystemExit as stop:  # Hydra and the task function exit this way
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    if parallel:  # joblib's workers outlive the command, in this test's folder: a later test's sweep would run there
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- small datasets in the real on-disk formats ----------------------------------------------------


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def labels(n: int, classes: int) -> list[int]:
    return [i % classes for i in range(n)]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian uint32 sizes, then the data."""
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_mnist(folder: Path, gz: bool, n_train: int = 40, n_test: int = 20, seed: int = 0) -> None:
    """The four IDX files of MNIST or Fashion-MNIST: random 28x28 images (drawn from ``seed``), 10 classes."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [images(n_train, (28, 28), seed), labels(n_train, 10), images(n_test, (28, 28), seed + 1),
              labels(n_test, 10)]
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(folder / (name + ".gz" if gz else name), np.asarray(array))


def toy_images(n_per_class: int = 12, classes: int = 3, shape: tuple[int, ...] = (1, 6, 6)):
    """A tiny image dataset held in memory as a DataView (what criteria that read samples take), every class
    equally represented."""
    from prunekit.data.dataset import Dataset, Split
    from prunekit.data.view import DataView

    generator = torch.Generator().manual_seed(0)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randint(0, 256, (len(y), *shape), generator=generator, dtype=torch.uint8)
    split = Split(x, y)
    return DataView(Dataset("toy", split, split, split, classes, shape, True, torch.full((shape[0],), 0.5),
                            torch.full((shape[0],), 0.25), 0, False))


def write_pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj))


def write_cifar10(root: Path, per_batch: int = 10) -> Path:
    """torchvision's cifar-10-batches-py folder under ``root``: pickled dicts of uint8 rows and int labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {"data": images(per_batch, (3 * 32 * 32,), i), "labels": labels(per_batch, 10)}
        write_pickle(folder / name, batch)
    write_pickle(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    return folder


def corrupt_idx(root: Path) -> Path:
    """A folder of the four Fashion-MNIST file names whose contents are not IDX data."""
    root.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(root / name, "wb") as handle:
            handle.write(b"\x00\x00\x08\x03not an idx file")
    return root


def interrupt_after(monkeypatch, checkpoints: int):
    """Make the next run raise KeyboardInterrupt (Ctrl-C) once it has written ``checkpoints`` last.pt files;
    returns the function that stops the interruption."""
    from prunekit import pipeline

    original, calls = pipeline.Run.save_last, []

    def save_then_stop(self, *a, **k):
        if len(calls) == checkpoints:
            raise KeyboardInterrupt
        original(self, *a, **k)
        calls.append(1)

    monkeypatch.setattr(pipeline.Run, "save_last", save_then_stop)
    return lambda: monkeypatch.setattr(pipeline.Run, "save_last", original)


def load_script(name: str):
    """A script of scripts/ (e.g. "bench_train") imported as a module, so its functions can be tested."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it: benchmark scripts may change the count, and on a
    busy 2-core machine two threads can each wait for the other's time slice."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hand_installed(site: Path, module: str, source: Path) -> Path:
    """``module`` (a copy of ``source``) with the dist-info an installer writes: METADATA and entry_points.txt."""
    (site / module).mkdir(parents=True)
    for path in source.rglob("*"):
        if path.is_file():
            target = site / module / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    info = site / f"{module}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[prunekit.plugins]\n{module} = {module}\n")
    return site
