#!/usr/bin/env python
"""Capture a terminal program's screen as HTML, for the docs' screenshot of W&B's terminal UI (``wandb leet``).

    python scripts/screenshot_terminal.py --seconds 8 --out leet.html wandb leet run RUN_DIR/wandb/offline-run-*
    chromium --headless=new --no-sandbox --window-size=1400,880 --screenshot=wandb.png file://$PWD/leet.html

The program runs in a pseudo-terminal of ``--cols`` x ``--rows`` for ``--seconds`` and is then stopped; the screen
it drew, as the terminal emulator pyte (``pip install pyte``) keeps it, is written as one HTML page with its colours,
which a browser turns into an image. Nothing of prunekit runs here: it is a tool for the docs.
"""
from __future__ import annotations

import argparse
import fcntl
import html
import os
import pty
import select
import signal
import struct
import termios
import time
from collections.abc import Sequence

from prunekit.errors import UserError, run_script

NAMED = {"black": "#000000", "red": "#cc3333", "green": "#33aa33", "brown": "#aaaa33", "yellow": "#dddd33",
         "blue": "#3366cc", "magenta": "#aa33aa", "cyan": "#33aaaa", "white": "#dddddd"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cols", type=int, default=160)
    parser.add_argument("--rows", type=int, default=45)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the program draws before it is stopped")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("command", nargs="+", help="the program and its arguments")
    return parser.parse_args(argv)


def capture(command: list[str], cols: int, rows: int, seconds: float):
    """The pyte screen of ``command`` after ``seconds`` in a ``cols`` x ``rows`` pseudo-terminal."""
    try:
        import pyte
    except ImportError:
        raise UserError("scripts/screenshot_terminal.py needs the pyte terminal emulator: pip install pyte") from None
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the program, told the terminal's size and colours
        os.environ.update(TERM="xterm-256color", COLORTERM="truecolor", COLUMNS=str(cols), LINES=str(rows))
        os.execvp(command[0], command)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                stream.feed(os.read(terminal, 65536))
            except OSError:  # the program ended
                break
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return screen


def _colour(name: str, default: str) -> str:
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return f"#{name}"
    return NAMED.get(name.removeprefix("bright"), default)


def as_html(screen) -> str:
    """The screen's characters with their colours, bold and reverse video, in a monospace block."""
    lines = []
    for y in range(screen.lines):
        spans = []
        for x in range(screen.columns):
            cell = screen.buffer[y][x]
            fg, bg = _colour(cell.fg, "#dddddd"), _colour(cell.bg, "#111111")
            if cell.reverse:
                fg, bg = bg, fg
            weight = "bold" if cell.bold else "normal"
            spans.append(f'<span style="color:{fg};background:{bg};font-weight:{weight}">'
                         f"{html.escape(cell.data or ' ')}</span>")
        lines.append("".join(spans))
    return ('<html><body style="margin:0;background:#111111"><pre style="font:14px/1.2 monospace;margin:8px">'
            + "\n".join(lines) + "</pre></body></html>")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    screen = capture(args.command, args.cols, args.rows, args.seconds)
    with open(args.out, "w") as handle:
        handle.write(as_html(screen))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_script(main)
