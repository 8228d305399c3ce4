"""The report folder: prunekit's own output, refused when it holds anything else.

Every file ``prunekit report`` writes has a name from a fixed set (tables, paper comparison, figures),
so a folder holding only such names was written by it and may be rewritten; one holding any other file
or folder belongs to the user, and nothing is written into it.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from matplotlib.figure import Figure

from prunekit.errors import UserError
from prunekit.rundir import atomic_write_bytes

REPORT = "report"  # the folder's name beside the runs
OWN_NAME = re.compile(r"table\.(md|csv|tex)|paper\.md|accuracy_vs_(density|flops)(_[A-Za-z0-9_.-]+)?\.(png|pdf)")
FIGURE_FORMATS = ("png", "pdf")
PNG_DPI = 150


class ReportFolder:
    """Where one report goes. Checked when made, so a refusal comes before any work is done."""

    def __init__(self, path: Path):
        self.path = path
        self.written: list[str] = []
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file; the report needs a folder there (or give --out DIR)")
        foreign = sorted(p.name for p in path.iterdir() if not _own(p)) if path.is_dir() else []
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise UserError(f"{path} holds files prunekit report did not write ({shown}); it writes only "
                            f"into a folder of its own: move them or give another folder with --out DIR")

    def write_text(self, name: str, text: str) -> None:
        """Write ``name`` (one of the report's file names) atomically."""
        self._write(name, text.encode())

    def write_figure(self, stem: str, fig: Figure) -> None:
        """Write ``fig`` as ``stem``.png and ``stem``.pdf."""
        for fmt in FIGURE_FORMATS:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=PNG_DPI)
            self._write(f"{stem}.{fmt}", buffer.getvalue())

    def remove_stale(self) -> None:
        """Delete the report files this report did not rewrite (a figure per dataset of an earlier report,
        paper.md when no run carries a paper block any more): they would describe other runs."""
        for path in self.path.iterdir():
            if _own(path) and path.name not in self.written:
                path.unlink()

    def _write(self, name: str, payload: bytes) -> None:
        if not OWN_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a report file name")  # a bug here, not a user's mistake
        try:
            atomic_write_bytes(self.path / name, payload)
        except OSError as err:
            raise UserError(f"cannot write {self.path / name}: {err.strerror or err}") from err
        self.written.append(name)


def _own(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and OWN_NAME.fullmatch(path.name) is not None
