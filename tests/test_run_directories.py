"""A run directory belongs to one command at a time and to one kind of output: SIGTERM ends a run like Ctrl-C,
a run killed before its first checkpoint is taken up again by the same command, a second command into a
busy directory is refused naming the holder, and a sweep's and a run's directories are not mistaken for
each other. Signals and races are tried on real processes."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_metrics, read_summary
from prunekit.errors import UserError
from prunekit.runlock import LOCK, hold, require_free

QUICK = ("train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "latency=false", "figures=false")
# One dense epoch of ~90 steps: long enough to stop the process before its first checkpoint.
SLOW_FIRST_EPOCH = ("train.epochs=1", "train.batch_size=16", *QUICK[1:])
WAIT = 240  # seconds: the most any process of these tests may take on a loaded machine
HOLD = ("import sys; from pathlib import Path; from prunekit.runlock import hold; "
        "hold(Path(sys.argv[1]), 'test'); print('held', flush=True); sys.stdin.read()")


def _one_line(code, err, *named):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in named:
        assert word in lines[0], (word, err)


def _train(tmp_path, *args) -> subprocess.Popen:
    """``prunekit train`` in its own process, writing where the ``cli`` fixture's runs write."""
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "prunekit", "train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _stop_when(process: subprocess.Popen, path: Path) -> None:
    """Freeze ``process`` (SIGSTOP) as soon as ``path`` exists, so that the test sees what it sees."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)


def _listing(folder: Path) -> dict:
    """Every path below ``folder``, with its file's modification time (a directory's changes with a lock's)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of a directory until the test ends; returns it."""
    started = []

    def start(directory: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, directory], cwd=tmp_path, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=WAIT)


# --- item 2: SIGTERM is Ctrl-C; a run killed before its first checkpoint is not a dead end ---------------


@pytest.mark.slow
def test_sigterm_before_the_first_checkpoint_ends_like_ctrl_c(tmp_path):
    run = _train(tmp_path, *SLOW_FIRST_EPOCH, "hydra.run.dir=run")
    _stop_when(run, tmp_path / "run" / "env.json")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGCONT)
    assert run.wait(timeout=WAIT) == 143
    err = run.stderr.read()
    assert err.strip().splitlines()[-1] == "prunekit: interrupted before the first checkpoint; nothing was kept", err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigterm_after_a_checkpoint_prints_the_command_that_resumes(cli, tmp_path):
    run = _train(tmp_path, "train.epochs=3", *QUICK[1:], "hydra.run.dir=run")
    _stop_when(run, tmp_path / "run" / "checkpoints" / "last.pt")
    assert not (tmp_path / "run" / "summary.json").exists()
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGCONT)
    assert run.wait(timeout=WAIT) == 143
    err = run.stderr.read()
    assert "Traceback" not in err
    command = shlex.split(err.strip().splitlines()[-1].split("continue with: ", 1)[1])
    assert command[:2] == ["prunekit", "train"] and "resume=true" in command
    code, _, err = cli(*command[1:])
    assert code == 0, err
    assert read_summary(tmp_path / "run")["density"] < 0.2
    assert [r["epoch"] for r in read_metrics(tmp_path / "run") if r.get("stage") == "dense"] == [1, 2, 3]


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_is_taken_up_by_the_same_command(cli, tmp_path):
    args = (*SLOW_FIRST_EPOCH, "hydra.run.dir=run")
    run = _train(tmp_path, *args)
    _stop_when(run, tmp_path / "run" / "env.json")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    run.kill()
    run.wait(timeout=WAIT)
    assert (tmp_path / "run" / LOCK).read_text().split()[0] == str(run.pid)  # a dead process's lock
    left = _listing(tmp_path / "run")
    code, _, err = cli("train", *args, "seed=1")  # another config: refused, nothing touched
    _one_line(code, err, "run", "another directory")
    assert _listing(tmp_path / "run") == {k: v for k, v in left.items() if k != LOCK}
    code, _, err = cli("train", *args)
    assert code == 0, err
    assert "starting it again" in err
    assert [r["epoch"] for r in read_metrics(tmp_path / "run") if r.get("stage") == "dense"] == [1]
    assert not (tmp_path / "run" / LOCK).exists()
    code, _, err = cli("train", *args)  # a finished run is still never run over
    _one_line(code, err, "already holds")


# --- item 3: one command per directory ------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_into_one_directory_one_runs_the_other_is_refused_naming_it(cli, tmp_path):
    first = _train(tmp_path, *QUICK, "hydra.run.dir=run")
    _stop_when(first, tmp_path / "run" / ".hydra" / "hydra.yaml")  # holding the directory, mid-way
    before = _listing(tmp_path / "run")
    code, _, err = cli("train", *QUICK, "hydra.run.dir=run")
    _one_line(code, err, "in use", f"pid {first.pid}")
    assert _listing(tmp_path / "run") == before  # the refused run wrote nothing
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=WAIT) == 0, first.stderr.read()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run") if r.get("stage") == "dense"] == [1, 2]
    assert not (tmp_path / "run" / LOCK).exists()


@pytest.mark.slow
def test_a_run_takes_over_its_pre_flights_lock_however_its_directory_is_spelt(cli, tmp_path):
    code, _, err = cli("train", *QUICK, "hydra.run.dir=elsewhere/../run")  # Hydra folds '..', as the lock does
    assert code == 0, err
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / LOCK).exists()


@pytest.mark.parametrize("held, args", [
    ("run", ("hydra.run.dir=run",)),
    ("sweep", ("-m", "seed=0,1", "hydra.sweep.dir=sweep")),
    ("sweep/1", ("-m", "seed=0,1", "hydra.sweep.dir=sweep")),  # a job still run by a killed sweep's worker
])
def test_a_directory_held_by_another_process_is_refused_before_anything_is_written(cli, tmp_path, holder,
                                                                                   held, args):
    process = holder(held)
    before = _listing(tmp_path)
    code, _, err = cli("train", *args, *QUICK)
    _one_line(code, err, "in use", f"pid {process.pid}", held)
    assert _listing(tmp_path) == before


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, holder):
    process = holder("run")
    with pytest.raises(UserError, match=f"pid {process.pid}"):
        require_free(tmp_path / "run", "hydra.run.dir")
    process.kill()
    process.wait(timeout=WAIT)
    require_free(tmp_path / "run", "hydra.run.dir")
    lock = hold(tmp_path / "run", "hydra.run.dir")
    assert (tmp_path / "run" / LOCK).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / "run" / LOCK).exists()


# --- item 4: a directory of the other kind, or none ------------------------------------------------------


def test_a_run_into_a_sweep_and_a_sweep_into_a_run_are_refused(cli, tmp_path):
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    (tmp_path / "sweep" / "multirun.yaml").write_text("hydra: {}\n")
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "summary.json").write_text("{}\n")
    before = _listing(tmp_path)
    code, _, err = cli("train", *QUICK, "hydra.run.dir=sweep")
    _one_line(code, err, "hydra.run.dir", "holds a sweep", "multirun.yaml")
    code, _, err = cli("train", "-m", *QUICK, "hydra.sweep.dir=run")
    _one_line(code, err, "hydra.sweep.dir", "holds a run", "summary.json")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("args", [("hydra.run.dir=''",), ("hydra.run.dir=",), ("-m", "hydra.sweep.dir=''")])
def test_an_empty_directory_option_is_refused(cli, tmp_path, args):
    code, _, err = cli("train", *args, *QUICK)
    _one_line(code, err, "is empty")
    assert list(tmp_path.iterdir()) == []
