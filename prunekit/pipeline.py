"""One run: the state is built (or restored from checkpoints/last.pt) and handed through the stages.

Every stage writes last.pt as it goes; ``resume=true`` rebuilds the state from it (the network from its
spec, so a compacted or narrowed network comes back as it was) and continues in the stage that was
interrupted, ending with the same result as a run that never was.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from prunekit import checkpoints, rng
from prunekit.acceleration import Acceleration
from prunekit.console import RunConsole
from prunekit.data import load_dataset
from prunekit.data.source import reason
from prunekit.data.view import DataView
from prunekit.distributed import world
from prunekit.errors import UserError
from prunekit.models.weights import start_from
from prunekit.pruning.methods import get_method_class
from prunekit.rundir import SUMMARY, RunDir
from prunekit.stages import stages_for
from prunekit.stages.rewind import check_rewind
from prunekit.state import ModelSpec, RunState
from prunekit.trackers.session import TrackerSession

_IGNORED_ON_RESUME = ("resume", "debug", "logger")  # keys that may differ between a run and its resumption


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' but no CUDA device is available; use device=cpu or device=auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def comparable(cfg: DictConfig) -> dict:
    """The config as a plain dict without the keys a resumption may change."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in _IGNORED_ON_RESUME:
        plain.pop(key, None)
    return plain


def config_differences(saved: dict, current: dict) -> list[str]:
    """The top-level config keys whose values differ between two plain config dicts."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def load_resume_state(cfg: DictConfig, run_dir: RunDir) -> dict:
    """The last checkpoint of the run being resumed, after checking it was made with this config."""
    path = run_dir.checkpoint("last")
    if (run_dir.root / SUMMARY).exists():
        raise UserError(
            f"resume=true but the run in {run_dir.root} is finished (it has {SUMMARY}); nothing to resume, "
            "and a finished run is never overwritten: choose another directory for a new run"
        )
    if not path.exists():
        raise UserError(
            f"resume=true but there is no checkpoint at {path}; point hydra.run.dir at the run to resume"
        )
    try:
        state = checkpoints.read(path, "last")
    except checkpoints.CheckpointError as err:  # truncated, empty or foreign: all mean "nothing to resume"
        raise UserError(f"{err}; it cannot be resumed, start the run again elsewhere") from err
    saved, current = state["config"], comparable(cfg)
    if saved != current:
        differing = config_differences(saved, current)
        raise UserError(
            f"resume=true but the config differs from the run in {run_dir.root} in: {', '.join(differing)}; "
            "resume with the same overrides"
        )
    return state


class Run:
    """Executes the stages for one composed config, writing into one run directory; the stages reach the
    config, directory, console and checkpoints through it. Under several ranks every rank executes it and
    rank 0 alone writes."""

    def __init__(self, cfg: DictConfig, run_dir: str, command: list[str], job: int | None = None,
                 sweep: Path | None = None):
        self.cfg, self.dir, self.command = cfg, RunDir(run_dir, writes=world.is_main()), command
        self.sweep = sweep  # the sweep's folder of a sweep's job (its trackers group the sweep's runs)
        self.device = resolve_device(cfg.device)
        self.acceleration = Acceleration.from_config(cfg, self.device)  # precision, channels_last, compile, ...
        self.console = RunConsole(job=job)  # job: the number of a sweep's job, which labels its lines

    def save_last(self, state: RunState, stage: str, epoch: int, done: bool, optimizer=None, scaler=None) -> None:
        """checkpoints/last.pt: where the run stands and everything that rebuilds its state (``scaler``: the fp16
        loss scale, so a resumed run scales as the uninterrupted one would; under several ranks, every rank's
        generators, which draw different noise)."""
        generators = world.gather(rng.capture())
        if not world.is_main():
            return
        checkpoints.save(
            self.dir.checkpoint("last"), "last", stage=stage, epoch=epoch, done=done, state=state.checkpoint(),
            optimizer=optimizer.state_dict() if optimizer is not None else None,
            scaler=scaler.state_dict() if scaler is not None else None,
            config=comparable(self.cfg), log_length=self.dir.log_length(),
            rng=generators[0] if len(generators) == 1 else generators,
        )

    @staticmethod
    def own_rng(resume: dict) -> dict:
        """This rank's generators as ``resume`` (last.pt) saved them: one state, or one per rank."""
        return resume["rng"][world.rank()] if isinstance(resume["rng"], list) else resume["rng"]

    def save_dense(self, weights: dict) -> None:
        if world.is_main():
            checkpoints.save_dense(self.dir.checkpoint("dense"), weights)

    def _fresh_state(self, data: DataView) -> RunState:
        spec = ModelSpec(OmegaConf.to_container(self.cfg.model, resolve=True), data.input_shape, data.num_classes)
        model = spec.build(self.device)
        start = start_from(model, self.cfg.model, data.dataset)
        if start is not None:  # saved weights: say which, and what the classifier got of them
            self.console.line(start.line)
            self.dir.log({"event": "start_weights", **start._asdict()})
        state = RunState(spec, model, None, data)
        state.replace_model(model, spec)
        get_method_class(self.cfg.method.name).check_network(self.cfg.method, state.masks)
        check_rewind(self.cfg, self.cfg.train.epochs * data.num_batches("train", self.cfg.train.batch_size))
        return state

    def _restored_state(self, resume: dict, data: DataView) -> RunState:
        try:
            return RunState.restore(resume["state"], data, self.device)
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise UserError(
                f"{self.dir.checkpoint('last')} does not rebuild a network of this run ({reason(err)}); "
                "it cannot be resumed with this config"
            ) from err

    def execute(self) -> RunState:
        """Run every stage not yet done; the last one writes the results."""
        cfg = self.cfg
        resume = load_resume_state(cfg, self.dir) if cfg.resume else None
        rng.seed_all(cfg.seed)
        data = DataView(load_dataset(cfg.data, self.device, cfg.seed))
        world.check_batches(data.num_samples("train"), {f"{stage}.batch_size": cfg[stage].batch_size
                                                         for stage in ("train", "prune", "finetune")})
        stages = stages_for(cfg)
        names = [stage.name for stage in stages]
        if resume:
            self.dir.truncate_log(resume["log_length"])
            state = self._restored_state(resume, data)
            start = names.index(resume["stage"]) + (1 if resume["done"] else 0)
        else:  # built first: a target the network cannot honour is refused before anything is written
            state, start = self._fresh_state(data), 0
        self.console.line(f"run directory: {self.dir.root}")
        self.dir.write_env(cfg.seed, self.device, self.command)
        self.dir.make_figures()
        with self.acceleration.process_settings(), self.console.running(), self._tracked() as finished:
            for index in range(start, len(stages)):
                continuing = resume if resume and not resume["done"] and index == start else None
                state = stages[index].run(self, state, continuing)
            finished.append(True)
        self.console.line(f"results in {self.dir.root}")
        return state

    @contextmanager
    def _tracked(self) -> Iterator[list]:
        """The run's trackers (rank 0's), told what the run directory is told, closed however the run ends; the
        list yielded gets an entry when the run finished."""
        if not world.is_main():
            yield []
            return
        session, finished = TrackerSession(self.cfg.logger, self.dir.root, self.sweep, self.cfg), []
        self.dir.observers.append(session)
        try:
            yield finished
        finally:
            self.dir.observers.remove(session)
            session.close(bool(finished))
