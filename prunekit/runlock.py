"""A command's hold on the directories it writes, from before its first file until it ends.

Each run directory (and a sweep's own directory) gets an exclusive ``flock`` on a file in it, ``LOCK``,
taken by the pre-flight before anything is written, so that a second command into the same directory is
refused with one line naming the holder's pid, and held until the run ends. The kernel drops the lock when
its process dies however it dies (kill -9 included): a lock file left behind by a dead process is taken
over by the next command. The file is removed when the hold ends, and only by its holder, while it still
holds it; whoever takes a lock checks that the file it locked is still the one at that path.

SIGTERM (SLURM, Kubernetes, ``kill``) ends a command the way Ctrl-C does, as :class:`Terminated`: the same
message, the same cleanup, and exit code 143 instead of 130.
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
from pathlib import Path

from prunekit.errors import UserError

LOCK = ".prunekit-lock"  # beside the outputs; not one of them (a run's outputs are prunekit/ownership.py's)

_held: dict[str, DirectoryLock] = {}  # directory (:func:`_absolute`) -> this process's hold on it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that both end a run alike."""


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The exit code of a command stopped by ``interrupt``: 143 for SIGTERM, 130 for Ctrl-C (128 + signal)."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def _terminate(signum, frame) -> None:
    raise Terminated


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`Terminated` in this process, unless someone else (a launcher)
    already handles it or this is not the main thread (only that one may set handlers)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _absolute(directory: Path) -> Path:
    """``directory`` as Hydra resolves an output directory (os.path.abspath: '..' folded, '~' kept), so that
    a run finds the hold its pre-flight took however the path was spelt."""
    return Path(os.path.abspath(directory))


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file records it: 'pid 123', or 'pid 123 on node7'."""
    try:
        pid, _, host = path.read_text().strip().partition(" ")
    except OSError:
        pid, host = "", ""
    if not pid:
        return "pid unknown"  # the holder has not written it yet
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"


def _lock_file(path: Path, key: str, create: bool) -> int | None:
    """An open descriptor of ``path`` under an exclusive lock (made when missing if ``create``); None when
    there is no file, or no directory, to lock; UserError when another process holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise UserError(f"{key}={path.parent} cannot be written ({err.strerror}); "
                            "a run needs a directory it can write to") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{key}={path.parent} is in use by another prunekit command ({_holder(path)}); "
                            "wait for it to end or choose another directory") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # its holder removed the file as it let go, and another may have made a new one: again


class DirectoryLock:
    """This process's exclusive hold on one directory (the ``LOCK`` file in it)."""

    def __init__(self, directory: Path, fd: int):
        self.directory, self.path, self.fd = directory, directory / LOCK, fd

    def release(self) -> None:
        """Remove the lock file and let go (again: nothing)."""
        if self.fd is None:
            return
        try:
            current, mine = os.stat(self.path), os.fstat(self.fd)
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                self.path.unlink()  # while still locked: no one else can be relying on this file yet
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None
        _held.pop(str(self.directory), None)


def hold(directory: Path, key: str) -> DirectoryLock:
    """Lock ``directory`` (the value of option ``key``) for this process, making it when missing; the hold
    this process already has when it has one (a run takes over its pre-flight's). UserError, naming the
    holder, when another process holds it."""
    directory = _absolute(directory)
    if str(directory) in _held:
        return _held[str(directory)]
    fd = None
    while fd is None:  # again if a command refused at once removed the directory it had made meanwhile
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"{key}={directory} cannot be made ({err.strerror}); "
                            "a run needs a directory it can write to") from err
        fd = _lock_file(directory / LOCK, key, create=True)
    os.ftruncate(fd, 0)  # a dead holder's pid may be longer than ours
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _held[str(directory)] = lock = DirectoryLock(directory, fd)
    return lock


def release(directory: Path) -> None:
    """End this process's hold on ``directory``, if it has one."""
    lock = _held.get(str(_absolute(directory)))
    if lock is not None:
        lock.release()


def require_free(directory: Path, key: str) -> None:
    """UserError naming the holder when another process holds ``directory``; nothing is written."""
    directory = _absolute(directory)
    if str(directory) in _held:
        return
    fd = _lock_file(directory / LOCK, key, create=False)
    if fd is not None:
        os.close(fd)  # a lock left by a dead process: free, and left for the job that will take it
