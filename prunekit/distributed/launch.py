"""Starting a run's ranks, and what their ending means for the job.

``distributed.nproc=N``: the Hydra job, which has pinned the run directory, resolved its config (``${now:}``
once) and holds the run's lock, starts N ranks on this machine with torch.distributed's elastic launcher (what
torchrun runs: a rendezvous on a free local port, no restarts). Every rank gets the job's resolved config and
directory; none composes its own. A rank that dies stops the others, and the job ends as an interrupted run
does: ``resume=true`` continues from the last checkpoint. On SLURM with several tasks per job (submitit), each
task is one rank already: :func:`slurm_world` joins them (submitit's TorchDistributedEnvironment).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from prunekit.errors import UserError
from prunekit.runlock import Terminated

_ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")


class RanksFailed(Exception):
    """A rank died or crashed; the launcher stopped the others."""


@dataclass(frozen=True)
class RankTask:
    """What every rank runs: the job's resolved config, its run directory and command, and where a rank
    leaves the one line of a user error for the job to say."""

    config: dict
    run_dir: str
    command: list[str]
    job: int | None
    sweep: Path | None
    messages: str
    threads: int


def backend(cfg: DictConfig) -> str:
    """The process group's backend: nccl for CUDA runs, gloo for the CPU, unless ``distributed.backend`` says."""
    if cfg.distributed.backend != "auto":
        return cfg.distributed.backend
    return "nccl" if _on_cuda(cfg) else "gloo"


def _on_cuda(cfg: DictConfig) -> bool:
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def _refuse_without_cuda(cfg: DictConfig, cuda: bool, why: str) -> None:
    """The options only CUDA can honour, refused when ``cuda`` is false (``why``: where the run is instead)."""
    if cfg.distributed.backend == "nccl" and not cuda:
        raise UserError(f"distributed.backend=nccl needs CUDA, but {why}; use distributed.backend=gloo or auto")
    if cfg.distributed.sync_bn and not cuda:
        raise UserError(f"distributed.sync_bn=true needs CUDA (torch's SyncBatchNorm has no CPU kernel), but {why}; "
                        "leave it false: each rank normalises by its share of the batch")


def check_config(cfg: DictConfig) -> None:
    """Refuse, before anything is written, the distributed options a CPU run (``device=cpu``) cannot honour."""
    _refuse_without_cuda(cfg, cfg.device != "cpu", "this run is on the CPU (device=cpu)")


def check_machine(cfg: DictConfig, ranks: int) -> None:
    """Refuse what ``ranks`` ranks cannot do on this machine: nccl or synchronised BatchNorm without CUDA, more
    ranks than CUDA devices."""
    cuda = _on_cuda(cfg)
    _refuse_without_cuda(cfg, cuda, f"this machine has no CUDA device (device={cfg.device})")
    if cuda and ranks > torch.cuda.device_count():
        raise UserError(f"distributed.nproc={ranks} but this machine has {torch.cuda.device_count()} CUDA devices; "
                        "one rank per device: choose at most that many")


def run_ranks(cfg: DictConfig, run_dir: Path, command: list[str], job: int | None, sweep: Path | None) -> None:
    """Run the job as ``distributed.nproc`` ranks and wait for them. A rank's user error is raised here as it
    was said there; a rank that died or crashed raises :class:`RanksFailed`; Ctrl-C or SIGTERM, an interruption."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    ranks = cfg.distributed.nproc
    check_machine(cfg, ranks)
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    with tempfile.TemporaryDirectory(prefix="prunekit-ranks-") as messages, _launching():
        task = RankTask(OmegaConf.to_container(cfg, resolve=True), str(run_dir), command, job, sweep, messages,
                        max(1, torch.get_num_threads() // ranks))  # the ranks share this job's cores
        try:
            elastic_launch(launch, run_rank)(task)
        except SignalException as stop:
            raise Terminated() if stop.sigval == signal.SIGTERM else KeyboardInterrupt() from None
        except ChildFailedError as failure:
            said = sorted(Path(messages).glob("rank-*"))
            if said:
                raise UserError(said[0].read_text()) from None
            # The first to fail: a rank a signal killed, else the earliest (the others lost their peer after it).
            rank, death = min(failure.failures.items(), key=lambda item: (item[1].exitcode >= 0, item[1].timestamp,
                                                                          item[0]))
            how = (f"was killed by signal {signal.Signals(-death.exitcode).name}" if death.exitcode < 0
                   else f"crashed (exit code {death.exitcode}, its traceback above)")
            raise RanksFailed(f"rank {rank} of {ranks} {how} and the others were stopped") from None


@contextmanager
def _launching() -> Iterator[None]:
    """The span of a launch: the launcher's own log lines (a traceback per failed rank) silenced, since a
    failure is said once in prunekit's words; its signal handlers replaced by the job's again afterwards; and a
    standard start method, which the ranks inherit (a joblib worker's own, loky, is unknown to a fresh rank)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    # torch gives each of the launcher's modules a logger with its own level: every one of them is set.
    names = [name for name in logging.root.manager.loggerDict if name.startswith(_ELASTIC_LOGGERS)]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    start_method = multiprocessing.get_start_method(allow_none=True)
    if start_method not in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        if start_method != multiprocessing.get_start_method(allow_none=True):
            multiprocessing.set_start_method(start_method, force=True)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def run_rank(task: RankTask) -> None:
    """One rank (the launcher's entry point, in a fresh process): join the group and execute the run. Only
    rank 0 prints; a user error is left for the job to say, and the rank exits 2 so the launcher stops the rest."""
    from prunekit.pipeline import Run

    cfg = OmegaConf.create(task.config)
    torch.set_num_threads(task.threads)
    join(cfg, int(os.environ["LOCAL_RANK"]))
    quiet = dist.get_rank() != 0
    if quiet:  # its tracebacks still reach the terminal, through sys.__stderr__
        sys.stdout = sys.stderr = open(os.devnull, "w")
    try:
        Run(cfg, task.run_dir, task.command, job=task.job, sweep=task.sweep).execute()
        dist.barrier()  # the others wait for rank 0's last files: no rank leaves while another still talks to it
    except UserError as err:
        if cfg.debug:  # debug=true: the traceback of where the rank found it, not only the job's
            traceback.print_exc(file=sys.__stderr__)
        (Path(task.messages) / f"rank-{dist.get_rank()}").write_text(str(err))
        sys.exit(2)
    except Exception:
        traceback.print_exc(file=sys.__stderr__)
        sys.exit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def join(cfg: DictConfig, local_rank: int) -> None:
    """Join the run's process group (rank and world from the environment the launcher set), on CUDA on this
    rank's own device."""
    if backend(cfg) == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend(cfg))


def slurm_rank() -> int | None:
    """This process's rank when it is one task of a SLURM job with several (submitit's launcher with
    ``tasks_per_node`` > 1), with the environment torch.distributed reads set from SLURM's; else None."""
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    from submitit.helpers import TorchDistributedEnvironment

    # Every device stays visible: join() picks this rank's by LOCAL_RANK, as under torch's own launcher.
    return TorchDistributedEnvironment().export(set_cuda_visible_devices=False).rank


def join_slurm(cfg: DictConfig) -> None:
    """Join the process group of the SLURM job's tasks, after refusing what they cannot do."""
    if cfg.distributed.nproc > 1:
        raise UserError(f"distributed.nproc={cfg.distributed.nproc} inside a SLURM job of {os.environ['WORLD_SIZE']} "
                        "tasks: the tasks are the ranks already; leave distributed.nproc at 1")
    check_machine(cfg, int(os.environ["LOCAL_WORLD_SIZE"]))
    join(cfg, int(os.environ["LOCAL_RANK"]))


def run_slurm_task(cfg: DictConfig, run_dir: Path, command: list[str], job: int | None, sweep: Path | None) -> None:
    """A task after the first of a SLURM job whose tasks are the ranks: the first speaks for the job (its lock,
    its outcome), this one runs its rank and says a user error in one line of its own log."""
    from prunekit.pipeline import Run

    try:
        join_slurm(cfg)
        Run(cfg, str(run_dir), command, job=job, sweep=sweep).execute()
    except UserError as err:
        print(f"prunekit: error: {err}", file=sys.stderr)
        sys.exit(2)
