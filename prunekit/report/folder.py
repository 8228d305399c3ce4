"""The report folder: prunekit's own output, and never a folder of the user's.

A folder is the report's only if prunekit made it: the first report writes a marker file there,
``.prunekit-report``, which records every file a report wrote. A later report may write into a folder
whose marker records all it holds, into an empty folder (it gets the marker) or where there is no folder
yet; any other folder is refused before anything is written. Stale files of an earlier report are
deleted only when its marker records them, so a file that merely has a report file's name is never
touched. A report folder of a prunekit from before the marker is refused like any folder of the user's.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

from matplotlib.figure import Figure

from prunekit.errors import UserError
from prunekit.rundir import atomic_write_bytes

REPORT = "report"  # the folder's name beside the runs
MARKER = ".prunekit-report"
# The names a report writes; a marker recording any other name (a path, say) is not prunekit's.
OWN_NAME = re.compile(r"table\.(md|csv|tex)|paper\.md|accuracy_vs_(density|flops)(_[A-Za-z0-9_.-]+)?\.(png|pdf)")
FIGURE_FORMATS = ("png", "pdf")
PNG_DPI = 150
NOTE = "written by prunekit report; a later report rewrites this folder and deletes only the files listed here"


class ReportFolder:
    """Where one report goes. Checked when made, so a refusal comes before any work is done; the folder
    and its marker are made at the first write."""

    def __init__(self, path: Path):
        self.path = path
        self.written: list[str] = []
        self.earlier = _recorded(path)  # the files earlier reports wrote here

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
        """Delete the files an earlier report wrote that this one did not rewrite (a figure per dataset,
        paper.md when no run carries a paper block any more): they would describe other runs."""
        for name in sorted(set(self.earlier) - set(self.written)):
            path = self.path / name
            if path.is_file() and not path.is_symlink():
                path.unlink()
        self.earlier = []
        self._record()

    def _write(self, name: str, payload: bytes) -> None:
        if not OWN_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a report file name")  # a bug here, not a user's mistake
        if not self.written:  # the first write: the folder may have changed since it was checked
            self.earlier = _recorded(self.path)
        # Recorded before it exists: a report stopped between the two leaves no file the marker lacks.
        self.written.append(name)
        self._record()
        self._put(name, payload)

    def _record(self) -> None:
        files = sorted(set(self.earlier) | set(self.written))
        self._put(MARKER, (json.dumps({"note": NOTE, "files": files}, indent=2) + "\n").encode())

    def _put(self, name: str, payload: bytes) -> None:
        atomic_write_bytes(self.path / name, payload)  # a folder that cannot be written is a UserError naming it


def _recorded(path: Path) -> list[str]:
    """The files the marker of ``path`` records (none for a folder that is absent or empty); UserError for
    anything that is not a report folder made by prunekit, or that holds a file its marker does not record."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; the report needs a folder there (or give --out DIR)")
    try:
        entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    except OSError as err:
        raise UserError(f"cannot read the report folder {path}: {err.strerror or err}") from err
    if not entries:
        return []
    marker = path / MARKER
    if not marker.is_file() or marker.is_symlink():
        raise UserError(f"{path} holds {_listed(entries)} and was not made by prunekit report (it has no {MARKER} "
                        f"file; report folders of earlier prunekit versions have none either); nothing was written: "
                        f"give a new folder with --out DIR")
    try:
        files = json.loads(marker.read_text())["files"]
        if not isinstance(files, list) or not all(isinstance(name, str) and OWN_NAME.fullmatch(name)
                                                  for name in files):
            raise ValueError("its files are not a list of report file names")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{marker} is not the record of a report folder ({err}); nothing was written: give a "
                        f"new folder with --out DIR") from err
    foreign = [name for name in entries if name != MARKER and not (
        name in files and (path / name).is_file() and not (path / name).is_symlink())]
    if foreign:
        raise UserError(f"{path} holds files prunekit report did not write ({_listed(foreign)}); it writes only "
                        f"into a folder of its own: move them or give another folder with --out DIR")
    return files


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
