"""Atomic writes for explain outputs: a reader never sees a half-written PNG or CSV."""
from __future__ import annotations

import io
import os
import pathlib
import secrets

from matplotlib.figure import Figure

PNG_DPI = 130


def write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    # Beside the target, so that os.replace is a same-filesystem rename and therefore atomic.
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name per writer, opened exclusively; unlike mkstemp it keeps the umask's permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Figure, path: pathlib.Path) -> None:
    """Render ``fig`` as PNG and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())
