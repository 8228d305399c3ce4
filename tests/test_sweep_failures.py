"""Sweeps around a failure: a crashing job is recorded with its traceback while the others finish, Ctrl-C
says one line from the sweep's own process, and a sweep killed with kill -9 leaves no worker running."""
import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.experimental.callback import Callback

from conftest import read_summary
from prunekit.errors import UserError
from prunekit.sweeps import FailureLog, record_crash

QUICK = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "figures=false")
LONG = ("train.epochs=400", "prune.epochs=1", "finetune.epochs=1", "latency=false", "figures=false")


def failing_by_seed(monkeypatch, outcomes: dict):
    """Make a run of seed s raise ``outcomes[s]`` at once (an exception class), or do nothing without one."""
    from prunekit import pipeline

    def execute(self):
        if self.cfg.seed in outcomes:
            raise outcomes[self.cfg.seed]("boom\nsecond line")  # a crash is told by its first line

    monkeypatch.setattr(pipeline.Run, "execute", execute)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("prunekit:")]


def test_a_crash_is_told_by_its_first_line_and_its_traceback_kept_beside_the_job(tmp_path):
    job = tmp_path / "sweep" / "1"
    job.mkdir(parents=True)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record_crash(tmp_path / "sweep", 1, ["seed=1"], job)
    [failure] = FailureLog(tmp_path / "sweep").failures()
    assert failure["crashed"]
    assert failure["error"] == f"crashed with RuntimeError: boom (traceback in {job / 'error.txt'})"
    assert "Traceback" in (job / "error.txt").read_text()
    crashed, bad_input = {"crashed": True}, {"crashed": False}
    assert [FailureLog.exit_code(f) for f in ([], [bad_input], [bad_input, crashed])] == [0, 2, 1]


@pytest.mark.slow
def test_a_crashing_job_is_recorded_and_the_others_finish(cli, tmp_path, monkeypatch):
    failing_by_seed(monkeypatch, {0: RuntimeError, 1: UserError})
    code, _, err = cli("train", "-m", "seed=0,1,2", "hydra.sweep.dir=sweep")
    assert code == 1  # a crash, not only bad input
    lines = error_lines(err)
    assert len(lines) == 2 and "Traceback" not in err
    report = tmp_path / "sweep" / "0" / "error.txt"
    assert lines[0] == f"prunekit: error: job 0 (seed=0): crashed with RuntimeError: boom (traceback in {report})"
    assert lines[1] == "prunekit: error: job 1 (seed=1): boom"
    assert "RuntimeError: boom" in report.read_text()
    assert (tmp_path / "sweep" / "0" / ".hydra").is_dir()  # the crashed job stays, for the same command
    assert not (tmp_path / "sweep" / "1").exists()  # the job that failed on bad input left nothing
    assert (tmp_path / "sweep" / "2" / ".hydra").is_dir()  # the job after them ran
    assert not (tmp_path / "sweep" / ".prunekit-failures").exists()


@pytest.mark.slow
def test_an_interrupted_sweep_says_so_once_and_keeps_no_bookkeeping(cli, tmp_path, monkeypatch):
    failing_by_seed(monkeypatch, {0: UserError, 1: KeyboardInterrupt})
    code, _, err = cli("train", "-m", "seed=0,1", "hydra.sweep.dir=sweep")
    assert code == 130
    assert error_lines(err) == ["prunekit: error: job 0 (seed=0): boom",
                                "prunekit: interrupted; the same command continues the sweep: prunekit train -m "
                                "seed=0,1 hydra.sweep.dir=sweep"]
    assert not (tmp_path / "sweep" / ".prunekit-failures").exists()


# --- real processes: a crash in a joblib worker, Ctrl-C to the process group, kill -9 of the sweep -----------


def prunekit(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.Popen:
    """``prunekit train -m ARGS`` in ``tmp_path``, in a process group of its own; PATH=``path`` if given. This
    test module is importable there (for :class:`CrashAfterFirstCheckpoint`)."""
    env = dict(os.environ, PRUNEKIT_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    if path is not None:
        env["PATH"] = path
    return subprocess.Popen([sys.executable, "-m", "prunekit", "train", "-m", *args], cwd=tmp_path, env=env,
                            start_new_session=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def end(process: subprocess.Popen) -> None:
    """Kill whatever is left of ``process``'s process group (after a failed assertion: nothing)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """``process``'s stdout and stderr once it has ended."""
    try:
        return process.communicate(timeout=timeout)
    finally:
        end(process)


class CrashAfterFirstCheckpoint(Callback):
    """A Hydra callback, so that it acts in a joblib worker too: the run of seed 1 crashes with RuntimeError
    right after it wrote its first checkpoint."""

    def on_job_start(self, config, **kwargs) -> None:
        from prunekit import pipeline

        original = self.original = pipeline.Run.save_last

        def save_then_crash(run, *args, **kw):
            original(run, *args, **kw)
            if run.cfg.seed == 1:
                raise RuntimeError("injected crash")

        pipeline.Run.save_last = save_then_crash

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from prunekit import pipeline

        pipeline.Run.save_last = self.original  # the worker's next job runs unchanged


@pytest.mark.slow
def test_a_crash_in_a_joblib_worker_is_recorded_and_a_rerun_continues_the_job(cli, tmp_path):
    sweep = ["seed=0,1", *QUICK, "hydra.sweep.dir=sweep"]
    _, err = finish(prunekit(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *sweep,
                             f"+hydra.callbacks.crash._target_={__name__}.CrashAfterFirstCheckpoint"))
    lines = error_lines(err)
    assert len(lines) == 1 and "job 1 (seed=1" in lines[0] and "RuntimeError: injected crash" in lines[0], err
    job = tmp_path / "sweep" / "1"
    assert "injected crash" in (job / "error.txt").read_text() and (job / "checkpoints" / "last.pt").is_file()
    assert read_summary(tmp_path / "sweep" / "0")["seed"] == 0
    assert not (tmp_path / "sweep" / ".prunekit-failures").exists()

    code, out, err = cli("train", "-m", *sweep)  # here, with the basic launcher: the jobs are the same
    assert code == 0, err
    assert "2 jobs: 1 finished (skipped), 1 resumed, 0 to run" in out
    assert read_summary(job)["seed"] == 1 and not (job / "error.txt").exists()


def long_sweep(tmp_path: Path, path: str | None = None) -> subprocess.Popen:
    """A joblib sweep of one long job on two workers (the second stays idle)."""
    return prunekit(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0", *LONG,
                    "hydra.sweep.dir=sweep", path=path)


def wait_for(pattern: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until a file matches ``pattern``; fails when ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"no {pattern} within {timeout} s"
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc): the workers and loky's resource trackers."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent to collect it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def left_running(pids: list[int], timeout: float = 30) -> list[int]:
    """Those of ``pids`` still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if running(pid)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")


@pytest.mark.slow
@needs_proc
def test_ctrl_c_to_a_joblib_sweep_says_once_that_the_same_command_continues_it(tmp_path):
    # Without pgrep (nor psutil) loky stops its workers through Process.kill(): the path that failed.
    sweep = long_sweep(tmp_path, path=str(tmp_path / "no-tools"))
    try:
        wait_for(str(tmp_path / "sweep" / "0" / "checkpoints" / "last.pt"), sweep)
        workers = children(sweep.pid)
        os.killpg(sweep.pid, signal.SIGINT)
        _, err = sweep.communicate(timeout=120)
        left = left_running(workers)
    finally:
        end(sweep)
    assert sweep.returncode == 130, err
    assert error_lines(err) == ["prunekit: interrupted; the same command continues the sweep: prunekit train -m "
                                f"hydra/launcher=joblib hydra.launcher.n_jobs=2 seed=0 {' '.join(LONG)} "
                                "hydra.sweep.dir=sweep"]
    assert "Traceback" not in err and "UserWarning" not in err
    assert (tmp_path / "sweep" / "0" / "checkpoints" / "last.pt").is_file()  # kept, to continue from
    assert not left


@pytest.mark.slow
@needs_proc
def test_the_workers_of_a_sweep_killed_with_kill_9_stop_with_it(tmp_path):
    sweep = long_sweep(tmp_path)
    try:
        wait_for(str(tmp_path / "sweep" / "0" / "metrics.jsonl"), sweep)  # one worker trains, one is idle
        workers = children(sweep.pid)
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait(timeout=30)
        left = left_running(workers)  # without the fix they train on, then idle for minutes
    finally:
        end(sweep)
    assert len(workers) >= 2 and not left
