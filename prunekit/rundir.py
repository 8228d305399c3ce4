"""The run directory: fixed file names, atomic writes, and the record of where a result came from."""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from prunekit.errors import UserError, file_errors

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
LAYERS = "layers.csv"
ENV = "env.json"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
CRASH_REPORT = "error.txt"  # a crashed sweep job's traceback (prunekit/sweeps.py)
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over, so readers never see half a file. A
    failure (a full disk, a read-only folder) is a one-line UserError naming ``path``."""
    with file_errors(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; keep the usual permissions
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_json(obj: Any, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _written(method):
    """A writing method of :class:`RunDir`, which does nothing where the run directory is read only (``writes``)."""
    @functools.wraps(method)
    def write(self, *args, **kwargs):
        if self.writes:
            return method(self, *args, **kwargs)
    return write


class RunDir:
    """One run's directory (layout in DESIGN.md section 4). ``writes=False`` (the ranks after the first of a
    run on several) reads it and leaves every write to rank 0."""

    def __init__(self, root: str | Path, writes: bool = True):
        self.root, self.writes = Path(root), writes
        # Told every record and the summary as they are written (prunekit/trackers/session.py's TrackerSession).
        self.observers: list = []
        self.checkpoints = self.root / CHECKPOINTS
        self.figures = self.root / FIGURES

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.pt"

    @_written
    def log(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl (a line is small enough to be written whole)."""
        with file_errors(self.root / METRICS, "write"):
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        for observer in self.observers:
            observer.record(record)

    @_written
    def make_figures(self) -> None:
        """Create figures/ (a link to nowhere or a file of that name is refused in one line)."""
        if self.figures.is_symlink() and not self.figures.exists():
            raise UserError(f"{self.figures} is a broken link (its target does not exist); remove it or create the "
                            "target")
        with file_errors(self.figures, "create the folder"):
            self.figures.mkdir(exist_ok=True)

    @_written
    def truncate_log(self, keep: int) -> None:
        """Keep the first ``keep`` records: a resumed run drops what came after its last checkpoint."""
        path = self.root / METRICS
        lines = path.read_text().splitlines(keepends=True)[:keep] if path.exists() else []
        atomic_write_bytes(path, "".join(lines).encode())

    def log_length(self) -> int:
        path = self.root / METRICS
        return len(path.read_text().splitlines()) if path.exists() else 0

    @_written
    def write_summary(self, summary: dict) -> None:
        atomic_write_json(summary, self.root / SUMMARY)
        for observer in self.observers:
            observer.summary(summary, self.root)

    @_written
    def write_layers(self, rows: list[dict]) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.root / LAYERS, out.getvalue().encode())

    @_written
    def write_env(self, seed: int, device: torch.device, command: list[str]) -> None:
        atomic_write_json(environment(seed, device, command), self.root / ENV)


def _git_commit() -> str | None:
    """The commit of the prunekit source tree, when it is a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(seed: int, device: torch.device, command: list[str]) -> dict:
    """Versions, commit, device and command line: what it takes to trust or repeat a result."""
    packages = {}
    for name in ("prunekit", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "scikit-learn"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "python": platform.python_version(),
        "packages": packages,
        "git_commit": _git_commit(),
        "device": str(device),
        "device_name": device_name or platform.machine(),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "command": command,
        "host": platform.node(),
    }
