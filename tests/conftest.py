"""Shared helpers: run the real CLI in-process, in a scratch directory, with a scratch dense cache."""
import gzip
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from prunekit.cli import main

# One thread: the suite's networks are small, and on a shared two-core machine a second thread mostly
# waits for a core, which made multi-threaded runs ten times slower in our measurements.
torch.set_num_threads(1)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Call ``prunekit`` with arguments; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))

    def run(*args: str):
        try:
            code = main(list(args))
        except SystemExit as stop:  # Hydra and the task function exit this way
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


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
