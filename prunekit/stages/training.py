"""The training stages: dense (cached), prune (along the schedule, with the method's hooks) and finetune.

Data order and augmentation come from a generator seeded per (seed, stage, epoch), and the global
generators (dropout) start each stage from a state fixed by (seed, stage) or, when resuming, from the
state saved with the last epoch: a resumed run ends with the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
from omegaconf import DictConfig, OmegaConf

from prunekit import metrics, rng
from prunekit.cache import DenseCache, dense_key
from prunekit.engine import build_optimizer, evaluate, train_epoch
from prunekit.errors import UserError, warn
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.schedules import ScheduledPruning, levels_without_training, pruning_steps, stage_epochs
from prunekit.data.source import reason
from prunekit.distributed import world
from prunekit.distributed.parallel import replicated, share_buffers
from prunekit.stages.rewind import Rewinder, RewindCapture, reinitialise, rewind_cache, rewound_options
from prunekit.state import RunState

TRAINING_STAGES = ("dense", "prune", "finetune")
OPTIONS = {"dense": "train", "prune": "prune", "finetune": "finetune"}  # each stage's config node


def epoch_generator(seed: int, stage: str, epoch: int) -> torch.Generator:
    """The generator for one epoch's data order and augmentation, independent of what ran before."""
    return torch.Generator().manual_seed(rng.derive(seed, TRAINING_STAGES.index(stage) * 10_007 + epoch))


def stage_seed(seed: int, stage: str) -> int:
    """The seed of the global generators (dropout and the like) at the start of ``stage``."""
    return rng.derive(seed, TRAINING_STAGES.index(stage) * 10_007 + 5_003)


def stop_if_diverged(record: dict, opt_cfg: DictConfig) -> None:
    """Stop a stage whose loss is no longer a finite number: nothing after it can be trusted."""
    for key in ("train_loss", "val_loss"):
        value = record.get(key)
        if value is not None and not math.isfinite(value):
            stage = record["stage"]
            raise UserError(
                f"the {stage} stage diverged in epoch {record['epoch']}: {key} is {value}; "
                f"lower the learning rate ({OPTIONS[stage]}.lr={opt_cfg.lr}) and run again"
            )


def fit(run, state: RunState, stage: str, opt_cfg: DictConfig, resume: dict | None, *, hooks=(), extra_groups=(),
        make_pruner=None, restarts: tuple[float, ...] = ()) -> None:
    """Train ``state.model`` for the epochs of ``opt_cfg``, continuing from ``resume`` when given; under several
    ranks through DDP (``extra_groups``' tensors too), each rank with its own noise."""
    if resume:
        rng.restore(run.own_rng(resume))
    else:
        rng.seed_all(world.rank_seed(stage_seed(run.cfg.seed, stage)))
    accelerated = run.acceleration.bind(state.model)  # before the optimiser: its state follows the memory format
    optimizer = build_optimizer([{"params": list(state.model.parameters())}, *extra_groups], opt_cfg,
                                accelerated.fused_optimizer)
    extras = [param for group in extra_groups for param in group["params"]]
    with replicated(state.model, extras, run.cfg.distributed.sync_bn) as trained:
        accelerated.train_through(trained)
        _train_epochs(run, state, stage, opt_cfg, resume, optimizer, accelerated, hooks, make_pruner, restarts)


def _train_epochs(run, state: RunState, stage: str, opt_cfg: DictConfig, resume: dict | None, optimizer, accelerated,
                  hooks, make_pruner, restarts: tuple[float, ...]) -> None:
    """The epochs of :func:`fit`, each ending with the validation figures, a line in metrics.jsonl and last.pt."""
    steps_per_epoch = state.data.num_batches("train", opt_cfg.batch_size)
    total = opt_cfg.epochs * steps_per_epoch
    start_epoch = resume["epoch"] if resume else 0
    if resume and resume["optimizer"] is not None:
        optimizer.load_state_dict(resume["optimizer"])
    if resume and resume.get("scaler") is not None:  # fp16 only (and absent from last.pt files older than it)
        accelerated.scaler.load_state_dict(resume["scaler"])
    step = start_epoch * steps_per_epoch
    # The masks follow the method's hooks, to re-zero whatever the step and those hooks moved (momentum keeps
    # moving a pruned weight), and precede the pruner, which must score the masked network as it is.
    hooks = [*hooks, state.masks]
    if make_pruner is not None:
        pruner = make_pruner(total, step, optimizer)
        if start_epoch == 0:
            pruner.start()
        hooks.append(pruner)
    with run.console.stage(stage, opt_cfg.epochs, start_epoch):
        for epoch in range(start_epoch, opt_cfg.epochs):
            began = time.perf_counter()
            with run.console.epoch(stage, epoch + 1, opt_cfg.epochs, steps_per_epoch) as on_batch:
                stats, step = train_epoch(state.model, state.data, optimizer, opt_cfg, hooks,
                                          epoch_generator(run.cfg.seed, stage, epoch), step, total, on_batch,
                                          restarts, accelerated)
            share_buffers(state.model)
            val = evaluate(state.model, state.data, "val", run.cfg.eval_batch_size, accelerated)
            seconds = time.perf_counter() - began
            state.seconds[stage] = state.seconds.get(stage, 0.0) + seconds
            record = {"stage": stage, "epoch": epoch + 1, "epochs": opt_cfg.epochs, **stats,
                      **{f"val_{k}": v for k, v in val.items()}, "density": state.density(),
                      "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
            if stage == "prune":
                record.update(state.method.epoch_end(epoch + 1))
            stop_if_diverged(record, opt_cfg)
            run.dir.log(record)
            run.console.epoch_line(record)
            run.save_last(state, stage, epoch + 1, done=False, optimizer=optimizer, scaler=accelerated.scaler)


class Dense:
    """Train the dense network, or take it from the cache when another run already did; with
    ``prune.rewind=weights``, take (or find cached) the weights at the rewind point too."""

    name = "dense"

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        cache = DenseCache(run.cfg.cache_dir, dense_key(run.cfg, run.device, state.data.dataset.fingerprint))
        point = rewind_cache(run.cfg, cache)
        began, before = time.perf_counter(), state.seconds.get("dense", 0.0)
        # Rank 0 alone reads and writes the cache (holding its lock while the ranks train) and tells the others.
        with cache.locked() if world.is_main() else contextlib.nullcontext():
            entry = world.broadcast(self._cached(run, state, cache, point) if world.is_main() else None)
            if entry is not None:
                if not world.is_main():  # rank 0 loaded it already, checking that it fits
                    state.model.load_state_dict(entry["model"])
                state.dense_metrics, state.rewind = entry["metrics"], entry.get("rewind")
            hit = entry is not None
            if not hit:
                capture = [RewindCapture(state, run.cfg.prune.rewind_iteration)] if point is not None else []
                fit(run, state, "dense", run.cfg.train, resume, hooks=capture)
                accelerated = run.acceleration.bind(state.model)
                state.dense_metrics = {split: evaluate(state.model, state.data, split, run.cfg.eval_batch_size,
                                                       accelerated) for split in ("val", "test")}
                entry = {"model": state.model.state_dict(), "metrics": state.dense_metrics}
                if world.is_main():
                    cache.store(entry)
                    if point is not None:
                        point.store({"model": state.rewind, "step": run.cfg.prune.rewind_iteration})
        state.seconds["dense"] = before + time.perf_counter() - began
        state.dense_hit = hit
        run.dir.log({"event": "dense_cache", "hit": hit, "key": cache.key, "seconds": state.seconds["dense"]})
        run.save_dense(entry["model"])
        run.save_last(state, self.name, run.cfg.train.epochs, done=True)
        return state

    @staticmethod
    def _cached(run, state: RunState, cache: DenseCache, point: DenseCache | None) -> dict | None:
        """The cache's entry for this dense training, with the weights at the rewind point when asked for
        (``rewind``), or None when it must train: no entry, no rewind point cached, or one that does not fit."""
        entry = cache.load(run.device)
        if entry is None:
            return None
        if point is not None:
            rewound = point.load(run.device)
            if rewound is None:  # trained again from the start, to take the weights at the rewind point
                return None
            entry["rewind"] = rewound["model"]
        try:
            state.model.load_state_dict(entry["model"])
            entry["metrics"] = {split: entry["metrics"][split] for split in ("val", "test")}
        except (RuntimeError, KeyError) as err:
            cache.set_aside(f"does not fit this model ({reason(err)})")
            return None
        return entry


class Prune:
    """Raise sparsity along the schedule while training with the method's hooks (rewinding after every step as
    ``prune.rewind`` says), then let the method settle its masks."""

    name = "prune"

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        cfg, method_class = run.cfg, get_method_class(run.cfg.method.name)
        target = method_class.schedule_target(cfg.method)
        state.method = method_class(cfg.method, state.model, state.masks, state.data, cfg.seed)
        if resume and resume["state"]["method"] is not None:
            state.method.load_state_dict(resume["state"]["method"])
        state.method.start()
        options = rewound_options(cfg.prune)
        epochs = stage_epochs(cfg.schedule, target, cfg.prune.epochs)
        if epochs == 0:  # no training to spread the schedule over: its steps follow one another
            for sparsity in levels_without_training(cfg.schedule, target):
                state.method.prune(sparsity)
                world.check_masks_agree(state.masks.buffers(), f"after the pruning step to sparsity {sparsity:g}")
            Rewinder(cfg.prune.rewind, state)()  # once: rewinding between untrained steps would change nothing
        else:
            options = OmegaConf.merge(options, {"epochs": epochs})
            total = epochs * state.data.num_batches("train", cfg.prune.batch_size)
            fit(run, state, "prune", options, resume, hooks=[state.method],
                extra_groups=state.method.param_groups(cfg.prune.lr),
                make_pruner=lambda total, step, optimizer: ScheduledPruning(
                    state.method, cfg.schedule, target, total, step,
                    _checked(state, Rewinder(cfg.prune.rewind, state, optimizer))),
                restarts=pruning_steps(cfg.schedule, target, total))
        state.method.finish()
        world.check_masks_agree(state.masks.buffers(), f"after {cfg.method.name} settled its masks")
        run.dir.log({"event": "pruned", "density": state.density(),
                     "sparsity_target": method_class.summary_entries(cfg.method)["sparsity_target"]})
        measure_pruned(state)
        run.save_last(state, self.name, cfg.prune.epochs, done=True)
        return state


def _checked(state: RunState, rewind: Rewinder):
    """What follows a pruning step while training: the check that every rank chose the same masks, then
    rewinding."""
    def after_prune() -> None:
        world.check_masks_agree(state.masks.buffers(), "after a pruning step")
        rewind()
    return after_prune


def measure_pruned(state: RunState) -> None:
    """The theoretical figures (params non-zero and effective, density, mask-aware FLOPs, layers.csv) of the
    masked network as pruned: its topology is fixed from here on, whatever compaction makes of it."""
    counts, state.layers = metrics.measure(state.model, state.data.input_shape)
    state.measured.update(counts)
    if counts["collapsed_layers"] or counts["classes_without_path"]:
        warn(f"the pruned network is cut: layers without an alive weight: {counts['collapsed_layers'] or 'none'}; "
             f"classes no input reaches: {counts['classes_without_path'] or 'none'} (raise method.min_keep)")


class Finetune:
    """Train the pruned (or compacted) network with its topology frozen (``finetune.reinit``: from fresh
    weights)."""

    name = "finetune"

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        if run.cfg.finetune.reinit and resume is None:
            reinitialise(state, run.cfg.seed)
        fit(run, state, "finetune", run.cfg.finetune, resume)
        run.save_last(state, self.name, run.cfg.finetune.epochs, done=True)
        return state
