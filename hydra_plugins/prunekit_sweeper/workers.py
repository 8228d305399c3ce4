"""What prunekit's sweeps need of joblib's worker processes (loky) that loky does not do by itself.

- A loky worker outlives a sweep killed with kill -9: it would finish its job unseen, then idle for minutes,
  and race a rerun of the sweep for the job's directory. Each worker ends itself as soon as the process that
  started it is gone (:func:`stop_with_parent`, which loky runs in every worker as it starts).
- Where neither psutil nor ``pgrep`` is installed (slim containers), loky stops its workers (Ctrl-C) through
  ``Process.kill()``, which calls a ``kill`` method that the standard library's Popen classes have had since
  Python 3.7 and loky's POSIX Popen lacks: a warning and an AttributeError traceback, and a sweep that hung
  instead of ending (:func:`mend_loky`).
"""
import multiprocessing
import os
import signal
import threading
import time
import warnings
from typing import Any

POLL_SECONDS = 0.2  # how long a worker may outlive its sweep's process


def stop_with_parent() -> None:
    """In a worker process: watch, in a daemon thread, the process that started this one, and end this
    one with SIGKILL once it is gone, leaving its job as kill -9 leaves a run: the next attempt resumes
    it. Nothing outside a worker process (a single run, the basic launcher's jobs)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent.pid:  # an orphan is handed to init (or a subreaper): another pid
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="prunekit-stop-with-parent", daemon=True).start()


def _kill(popen: Any) -> None:
    """``Popen.kill`` for loky's POSIX Popen: SIGKILL, as the standard library's Popen classes do it."""
    if popen.returncode is None:
        try:
            os.kill(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def mend_loky() -> None:
    """Let loky stop its workers without psutil or pgrep: give its POSIX Popen the ``kill`` it lacks, and
    silence the warning that precedes that fallback (prunekit's workers start no processes of their own
    that would be left behind)."""
    if os.name != "posix":
        return
    from joblib.externals.loky.backend.popen_loky_posix import Popen

    if not hasattr(Popen, "kill"):
        Popen.kill = _kill
    warnings.filterwarnings("ignore", message="Failed to kill subprocesses", category=UserWarning)


def prepare(launcher: Any) -> None:
    """Ready a joblib launcher's workers for a sweep (any other launcher is left as it is)."""
    options = getattr(launcher, "joblib", None)
    if type(launcher).__name__ != "JoblibLauncher" or not isinstance(options, dict):
        return
    mend_loky()
    options["initializer"] = stop_with_parent  # joblib hands it to loky, which runs it in each new worker
