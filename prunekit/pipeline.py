"""The stages of one run: dense training (cached) -> pruning along the schedule -> fine-tuning -> evaluation.

Every epoch ends with a checkpoint (checkpoints/last.pt); ``resume=true`` continues from it and, because
data order and augmentation are drawn from a generator seeded per (seed, stage, epoch), ends with the
same result as a run that was never interrupted.
"""
from __future__ import annotations

import math
import time

import torch
from omegaconf import DictConfig, OmegaConf

from prunekit import metrics, rng
from prunekit.cache import DenseCache, dense_key
from prunekit.console import RunConsole
from prunekit.data import load_dataset
from prunekit.data.source import reason
from prunekit.engine import build_optimizer, evaluate, train_epoch
from prunekit.errors import UserError, warn
from prunekit.explain import explain_mlp
from prunekit.explain.command import is_mlp
from prunekit.models import build_model
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.schedules import ScheduledPruning
from prunekit.rundir import SUMMARY, RunDir, atomic_save

STAGES = ("dense", "prune", "finetune")
_IGNORED_ON_RESUME = ("resume", "debug")  # keys that may differ between a run and its resumption
_LAST_KEYS = ("stage", "epoch", "model", "optimizer", "method", "config", "log_length", "seconds", "dense_metrics", "rng")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' but no CUDA device is available; use device=cpu or device=auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def epoch_generator(seed: int, stage: str, epoch: int) -> torch.Generator:
    """The generator for one epoch's data order and augmentation, independent of what ran before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_007 + epoch)


def stage_seed(seed: int, stage: str) -> int:
    """The seed of the global generators (dropout and the like) at the start of ``stage``."""
    return seed * 1_000_003 + STAGES.index(stage) * 10_007 + 5_003


def comparable(cfg: DictConfig) -> dict:
    """The config as a plain dict without the keys a resumption may change."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in _IGNORED_ON_RESUME:
        plain.pop(key, None)
    return plain


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
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, empty or foreign: all mean "not a checkpoint"
        raise UserError(
            f"{path} cannot be read as a prunekit checkpoint ({reason(err)}); "
            "it is damaged, so this run cannot be resumed: start it again in another directory"
        ) from err
    if not (isinstance(state, dict) and all(key in state for key in _LAST_KEYS)):
        raise UserError(f"{path} is not a prunekit last.pt checkpoint (keys missing); it cannot be resumed")
    saved, current = state["config"], comparable(cfg)
    if saved != current:
        differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise UserError(
            f"resume=true but the config differs from the run in {run_dir.root} in: {', '.join(differing)}; "
            "resume with the same overrides"
        )
    return state


def _stop_if_diverged(record: dict, opt_cfg: DictConfig) -> None:
    """Stop a stage whose loss is no longer a finite number: nothing after it can be trusted."""
    for key in ("train_loss", "val_loss"):
        value = record.get(key)
        if value is not None and not math.isfinite(value):
            stage = record["stage"]
            raise UserError(
                f"the {stage} stage diverged in epoch {record['epoch']}: {key} is {value}; "
                f"lower the learning rate ({stage}.lr={opt_cfg.lr}) and run again"
            )


class Run:
    """Executes the stages for one composed config, writing into one run directory."""

    def __init__(self, cfg: DictConfig, run_dir: str, command: list[str]):
        self.cfg, self.dir, self.command = cfg, RunDir(run_dir), command
        self.device = resolve_device(cfg.device)
        self.console = RunConsole()
        self.seconds: dict[str, float] = {}
        self.dense_metrics: dict = {}
        self.dense_hit = False
        self.method = None

    # -- checkpoints -------------------------------------------------------------------------------
    def _save_last(self, stage: str, epoch: int, optimizer) -> None:
        atomic_save(
            {
                "stage": stage,
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "method": self.method.state_dict() if self.method is not None else None,
                "config": comparable(self.cfg),
                "log_length": self.dir.log_length(),
                "seconds": self.seconds,
                "dense_metrics": self.dense_metrics,
                "rng": rng.capture(),
            },
            self.dir.checkpoint("last"),
        )

    # -- one training stage ------------------------------------------------------------------------
    def _train(self, stage: str, opt_cfg: DictConfig, hooks: list, extra_groups: list, resume: dict | None,
               make_pruner=None) -> None:
        """Run ``opt_cfg.epochs`` epochs of ``stage``, continuing from ``resume`` when given."""
        steps_per_epoch = self.data.num_batches("train", opt_cfg.batch_size)
        total = opt_cfg.epochs * steps_per_epoch
        start_epoch = resume["epoch"] if resume else 0
        if resume:
            rng.restore(resume["rng"])
        else:
            rng.seed_all(stage_seed(self.cfg.seed, stage))
        optimizer = build_optimizer([{"params": list(self.model.parameters())}, *extra_groups], opt_cfg)
        if resume and resume["optimizer"] is not None:
            optimizer.load_state_dict(resume["optimizer"])
        step = start_epoch * steps_per_epoch
        if make_pruner is not None:
            pruner = make_pruner(total, step)
            if start_epoch == 0:
                pruner.start()
            hooks = [*hooks, pruner]
        hooks = [*hooks, self.masks]  # masks last: they re-zero whatever the other hooks touched
        with self.console.stage(stage, opt_cfg.epochs, start_epoch):
            for epoch in range(start_epoch, opt_cfg.epochs):
                began = time.perf_counter()
                with self.console.epoch(stage, epoch + 1, opt_cfg.epochs, steps_per_epoch) as on_batch:
                    stats, step = train_epoch(
                        self.model, self.data, optimizer, opt_cfg, hooks,
                        epoch_generator(self.cfg.seed, stage, epoch), step, total, on_batch,
                    )
                val = evaluate(self.model, self.data, "val", self.cfg.eval_batch_size)
                seconds = time.perf_counter() - began
                self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
                record = {"stage": stage, "epoch": epoch + 1, "epochs": opt_cfg.epochs, **stats,
                          **{f"val_{k}": v for k, v in val.items()}, "density": self.masks.density(),
                          "lr": optimizer.param_groups[0]["lr"], "seconds": seconds}
                if stage == "prune":  # a method whose masks are written only at the end reports its own density
                    record.update(self.method.epoch_stats())
                _stop_if_diverged(record, opt_cfg)
                self.dir.log(record)
                self.console.epoch_line(record)
                self._save_last(stage, epoch + 1, optimizer)

    # -- the stages --------------------------------------------------------------------------------
    def _dense(self, resume: dict | None) -> None:
        """Train the dense network, or take it from the cache when another run already did."""
        cache = DenseCache(self.cfg.cache_dir, dense_key(self.cfg, self.device))
        began, before = time.perf_counter(), self.seconds.get("dense", 0.0)
        with cache.locked():
            entry = cache.load(self.device)
            if entry is not None:
                try:
                    self.model.load_state_dict(entry["model"])
                    self.dense_metrics = {split: entry["metrics"][split] for split in ("val", "test")}
                except (RuntimeError, KeyError) as err:
                    cache.set_aside(f"does not fit this model ({reason(err)})")
                    entry = None
            hit = entry is not None
            if not hit:
                self._train("dense", self.cfg.train, [], [], resume)
                self.dense_metrics = {
                    split: evaluate(self.model, self.data, split, self.cfg.eval_batch_size) for split in ("val", "test")
                }
                entry = {"model": self.model.state_dict(), "metrics": self.dense_metrics}
                cache.store(entry)
        self.seconds["dense"] = before + time.perf_counter() - began
        self.dense_hit = hit
        self.dir.log({"event": "dense_cache", "hit": hit, "key": cache.key, "seconds": self.seconds["dense"]})
        atomic_save(entry["model"], self.dir.checkpoint("dense"))

    def _prune(self, resume: dict | None) -> None:
        """Raise sparsity along the schedule while training, then let the method settle its masks."""
        cfg, target = self.cfg, self.cfg.method.sparsity
        opt_cfg = cfg.prune
        self.method.start()
        if opt_cfg.epochs == 0:
            self.method.prune(target)  # no training to spread the schedule over: prune at once
        else:
            self._train(
                "prune", opt_cfg, [self.method], self.method.param_groups(opt_cfg.lr), resume,
                make_pruner=lambda total, step: ScheduledPruning(self.method, cfg.schedule, target, total, step),
            )
        self.method.finish()
        self.dir.log({"event": "pruned", "density": self.masks.density(), "sparsity_target": target})

    def execute(self) -> dict:
        """Run every stage not yet done and write the results; returns summary.json's content."""
        cfg = self.cfg
        resume = load_resume_state(cfg, self.dir) if cfg.resume else None
        rng.seed_all(cfg.seed)
        self.data = load_dataset(cfg.data, self.device)
        self.model = build_model(cfg.model, self.data.input_shape, self.data.num_classes).to(self.device)
        self.masks = MaskSet(self.model)
        self.dir.write_env(cfg.seed, self.device, self.command)
        self.dir.figures.mkdir(exist_ok=True)
        done = STAGES.index(resume["stage"]) if resume else -1
        if resume:
            self.dir.truncate_log(resume["log_length"])
            self.seconds, self.dense_metrics = dict(resume["seconds"]), resume["dense_metrics"]
            if resume["stage"] != "dense":
                self._load_resumed_model(resume)
        with self.console.running():
            if done <= 0:
                if resume and resume["stage"] == "dense":
                    self._load_resumed_model(resume)
                self._dense(resume if done == 0 else None)
            self.method = get_method_class(cfg.method.name)(cfg.method, self.model, self.masks, self.data, cfg.seed)
            if resume and resume["method"] is not None and done >= 1:
                self.method.load_state_dict(resume["method"])
            if done <= 1:
                self._prune(resume if done == 1 else None)
            self._train("finetune", cfg.finetune, [], [], resume if done == 2 else None)
            return self._finish()

    def _load_resumed_model(self, resume: dict) -> None:
        try:
            self.model.load_state_dict(resume["model"])
        except RuntimeError as err:
            raise UserError(
                f"{self.dir.checkpoint('last')} holds weights of another model ({reason(err)}); "
                "it cannot be resumed with this config"
            ) from err
        self.masks.refresh()

    def _finish(self) -> dict:
        """Evaluate on the test split and write the checkpoints, layer table and summary."""
        cfg, began = self.cfg, time.perf_counter()
        test = evaluate(self.model, self.data, "test", cfg.eval_batch_size)
        counts, layers = metrics.measure(self.model, self.data.input_shape)
        atomic_save(
            {"model": self.model.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True),
             "input_shape": list(self.data.input_shape), "num_classes": self.data.num_classes},
            self.dir.checkpoint("pruned"),
        )
        self.dir.write_layers(layers)
        if counts["collapsed_layers"] or counts["classes_without_path"]:
            warn(
                f"the pruned network is cut: layers without an alive weight: {counts['collapsed_layers'] or 'none'}; "
                f"classes no input reaches: {counts['classes_without_path'] or 'none'} (raise method.min_keep)"
            )
        if is_mlp(self.model):  # figures of the surviving network, whichever method pruned it
            counts.update(explain_mlp(self.model, self.data.input_shape, self.dir.figures))
        self.seconds["evaluate"] = time.perf_counter() - began
        summary = {
            "dataset": cfg.data.name, "model": cfg.model.name, "method": cfg.method.name,
            "granularity": cfg.method.granularity, "schedule": cfg.schedule.name, "seed": cfg.seed,
            "device": str(self.device),
            "accuracy": test["accuracy"], **({"top5": test["top5"]} if "top5" in test else {}),
            "loss": test["loss"],
            "val_accuracy": evaluate(self.model, self.data, "val", cfg.eval_batch_size).get("accuracy"),
            "dense_accuracy": self.dense_metrics["test"]["accuracy"],
            "dense_cache_hit": self.dense_hit,
            **counts,
            "sparsity_target": cfg.method.sparsity,
            "seconds": {**self.seconds, "total": sum(self.seconds.values())},
        }
        self.dir.write_summary(summary)
        self.dir.log({"event": "done", "accuracy": summary["accuracy"], "density": summary["density"]})
        self.console.summary(summary)
        return summary
