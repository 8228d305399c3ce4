"""What a command may delete: only what it created itself.

Before Hydra writes anything, the pre-flight inspects every output directory a command will write to
(a run's, or a sweep's and each of its jobs'). A directory that already holds any file a run writes is
refused unless the command resumes it, so whatever of those names exists after a failed run was
written by that run. Cleaning up after a failure removes exactly those names, then the directory and
its parents only if this command created them and they are empty: a folder that existed before, and
every file in it that prunekit does not write, survives (``hydra.run.dir=.`` included). The command's lock
file (prunekit/runlock.py) is not an output: a directory holding only a dead command's lock is free.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from prunekit.errors import UserError
from prunekit.rundir import CHECKPOINTS, CRASH_REPORT, ENV, FIGURES, LAYERS, METRICS, SUMMARY
from prunekit.runlock import release

RUN_OUTPUTS = (".hydra", ENV, METRICS, SUMMARY, LAYERS, CHECKPOINTS, FIGURES, CRASH_REPORT)  # what a run writes
SWEEP_OUTPUTS = ("multirun.yaml",)  # what Hydra writes beside the jobs of a sweep


def _first_file_on_path(path: Path) -> Path | None:
    """``path`` or the ancestor of it that exists as something other than a directory, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def require_directory_path(path: Path, key: str) -> None:
    """Raise UserError when ``path`` (the value of option ``key``) cannot be a directory: it, or one of
    its parents, is an existing file."""
    blocker = _first_file_on_path(path)
    if blocker is not None:
        raise UserError(f"{key}={path} cannot be a directory: {blocker} is a file; choose a directory path")


@dataclass
class OutputDir:
    """One directory a command writes, as it was before the command started."""

    path: Path
    outputs: tuple[str, ...] = RUN_OUTPUTS
    existed: bool = False
    created_parents: list[Path] = field(default_factory=list)  # missing ancestors, innermost first

    @classmethod
    def inspect(cls, path: Path, key: str, outputs: tuple[str, ...] = RUN_OUTPUTS) -> OutputDir:
        """Record the state of ``path`` (option ``key``), refusing a path that runs through a file."""
        require_directory_path(path, key)
        absolute = Path(os.path.abspath(path))  # as Hydra resolves it: '..' folded, '~' not expanded
        missing = [p for p in absolute.parents if not p.exists()]
        return cls(absolute, outputs, absolute.is_dir(), missing)

    def _existing(self, names: tuple[str, ...]) -> list[str]:
        # lexists: a link (a broken one too) the user put under one of a run's names is theirs, not a run's
        return [name for name in names if os.path.lexists(self.path / name)] if self.existed else []

    @staticmethod
    def _listed(names: list[str]) -> str:
        """The first names, so that a message stays one short line: '.hydra, env.json, metrics.jsonl, ...'."""
        return ", ".join(names[:3] + (["..."] if len(names) > 3 else []))

    def present(self) -> list[str]:
        """The names this kind of directory holds after a run that already exist in it."""
        return self._existing(self.outputs)

    def refuse_other_kind(self, key: str) -> None:
        """Raise UserError when the directory belongs to the other kind: a sweep's given as a run's (a run
        there would hide the sweep's jobs from a report), or a run's given as a sweep's."""
        other, kind, own = ((SWEEP_OUTPUTS, "a sweep", "run") if self.outputs == RUN_OUTPUTS
                            else (RUN_OUTPUTS, "a run", "sweep"))
        found = self._existing(other)
        if found:
            raise UserError(f"{key}={self.path} holds {kind} ({self._listed(found)}); a {own} needs a directory of "
                            "its own: choose another")

    def refuse_reuse(self, key: str) -> None:
        """Raise UserError when the directory already holds outputs of a run and is not being resumed."""
        found = self.present()
        if found:
            raise UserError(
                f"{key}={self.path} already holds {self._listed(found)}; pass resume=true to continue the run there, "
                "or choose another directory"
            )

    def discard(self) -> None:
        """Remove what a failed command wrote here, and the directory and parents it created when empty."""
        for name in self.outputs:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists() or target.is_symlink():
                target.unlink(missing_ok=True)
        self.remove_created()

    def remove_created(self) -> None:
        """Remove the directory and the parents this command created, each only when empty; this process's
        lock on a directory it created goes first."""
        if not self.existed:
            release(self.path)
        for folder in ([] if self.existed else [self.path]) + self.created_parents:
            try:
                folder.rmdir()  # only ever an empty directory: rmdir refuses anything else
            except OSError:
                return
