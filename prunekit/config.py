"""Typed schemas for every config group, stored in Hydra's ConfigStore.

Each YAML file of a group names its schema in its defaults list (``/schema/<group>/<name>@_here_``),
so a misspelt key or a value of the wrong type fails when the config is composed, before any work.
Value ranges that a type cannot express are checked by :func:`validate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from prunekit.errors import UserError


@dataclass
class AugmentConfig:
    crop_padding: int = 0  # random crop after zero-padding by this many pixels; 0 turns it off
    hflip: bool = False  # random horizontal flip


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = "${oc.env:PRUNEKIT_DATA,'~/.cache/prunekit/data'}"
    download: bool = False
    val_fraction: float = 0.1  # carved from train, seeded; the test split is only used at the end
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class SyntheticDataConfig(DataConfig):
    samples: int = 2000
    features: int = 16
    informative: int = 8
    classes: int = 4
    shape: list[int] = field(default_factory=list)  # e.g. [1, 4, 4] to present features as an image


@dataclass
class Caltech101DataConfig(DataConfig):
    image_size: int = 64  # every image is resized once to image_size x image_size and cached
    test_fraction: float = 0.2  # per-class share of the fixed test split
    split_seed: int = 0  # the split is fixed by this seed, not by the run's seed


@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ModelConfig):
    hidden: list[int] = field(default_factory=lambda: [300, 100])


@dataclass
class ConvNetConfig(ModelConfig):
    variant: str = "small"  # small: 32x32 inputs (3x3 stem); imagenet: the torchvision network
    pretrained: bool = False  # torchvision ImageNet weights, classifier replaced for the dataset


@dataclass
class MethodConfig:
    name: str = MISSING
    sparsity: float = 0.9  # fraction of prunable groups removed (weights, or units for unit granularity)
    granularity: str = "weight"  # weight | unit | input | block
    scope: str = "global"  # global: one threshold over all layers; layer: the same fraction per layer


@dataclass
class GumbelConfig(MethodConfig):
    """method=gumbel (prunekit/pruning/methods/gumbel.py; the defaults are argued in configs/method/gumbel.yaml)."""

    target: str = "scheduled"  # scheduled: rho_target follows the schedule, exact top-k; emergent: rho_target = 0
    lam: float = 1e-3  # density-term pull per gate: lam * N * |rho_target - density|, one value for any N
    tau: float = 3.0  # Gumbel-Softmax temperature
    tau_final: Optional[float] = None  # anneal tau geometrically to this along the schedule; null: fixed tau
    gate_lr: float = 0.1  # learning rate of the keep-minus-drop logits (weights use the stage's lr)
    init_keep: float = 0.95  # starting keep probability sigmoid(keep - drop); 0.95 is keep - drop ~ 3


@dataclass
class ScheduleConfig:
    name: str = MISSING
    initial_sparsity: float = 0.0
    start: float = 0.0  # fraction of the pruning stage where sparsity starts to grow
    end: float = 0.5  # fraction of the pruning stage where the target is reached
    frequency: int = 10  # optimiser steps between mask updates
    steps: int = 5  # number of equal steps (iterative only)


@dataclass
class OptimConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"  # cosine | constant


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    schedule: Any = MISSING
    train: OptimConfig = field(default_factory=OptimConfig)
    prune: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=5, lr=0.01))
    finetune: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=3, lr=0.01))
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = False
    debug: bool = False
    eval_batch_size: int = 1024
    cache_dir: str = "${oc.env:PRUNEKIT_CACHE,'~/.cache/prunekit/dense'}"
    paper: dict[str, Any] = field(default_factory=dict)  # an experiment's published claim, for reports


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, name, node in [
        ("data", "base", DataConfig),
        ("data", "synthetic", SyntheticDataConfig),
        ("data", "caltech101", Caltech101DataConfig),
        ("model", "mlp", MLPConfig),
        ("model", "convnet", ConvNetConfig),
        ("method", "base", MethodConfig),
        ("method", "gumbel", GumbelConfig),
        ("schedule", "base", ScheduleConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node)


def choice(value: Any, allowed: list[str], key: str) -> None:
    """Raise a one-line UserError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def in_range(value: float, low: float, high: float, key: str, high_open: bool = True) -> None:
    """Raise a one-line UserError when ``value`` lies outside [low, high) (or [low, high])."""
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise UserError(f"{key}={value} is outside the allowed range [{low}, {high}{bracket}")


def validate(cfg: DictConfig) -> None:
    """Check the values that a type cannot check; method-specific checks live with the method."""
    from prunekit.pruning.methods import get_method_class

    in_range(cfg.method.sparsity, 0.0, 1.0, "method.sparsity")
    in_range(cfg.schedule.initial_sparsity, 0.0, 1.0, "schedule.initial_sparsity")
    if cfg.schedule.initial_sparsity > cfg.method.sparsity:
        raise UserError(
            f"schedule.initial_sparsity={cfg.schedule.initial_sparsity} exceeds "
            f"method.sparsity={cfg.method.sparsity}; it must be at most the target"
        )
    in_range(cfg.schedule.start, 0.0, 1.0, "schedule.start", high_open=False)
    in_range(cfg.schedule.end, cfg.schedule.start, 1.0, "schedule.end", high_open=False)
    if cfg.schedule.frequency < 1:
        raise UserError(f"schedule.frequency={cfg.schedule.frequency} must be a positive number of steps")
    if cfg.schedule.steps < 1:
        raise UserError(f"schedule.steps={cfg.schedule.steps} must be at least 1")
    in_range(cfg.data.val_fraction, 0.0, 1.0, "data.val_fraction")
    choice(cfg.device, ["auto", "cpu", "cuda"], "device")
    choice(cfg.method.granularity, ["weight", "unit", "input", "block"], "method.granularity")
    choice(cfg.method.scope, ["global", "layer"], "method.scope")
    for stage in ("train", "prune", "finetune"):
        opt = cfg[stage]
        choice(opt.optimizer, ["sgd", "adam"], f"{stage}.optimizer")
        choice(opt.lr_schedule, ["cosine", "constant"], f"{stage}.lr_schedule")
        if opt.epochs < 0 or opt.batch_size < 1 or opt.lr < 0:
            raise UserError(
                f"{stage}: epochs={opt.epochs}, batch_size={opt.batch_size}, lr={opt.lr}; "
                "epochs and lr must be >= 0 and batch_size >= 1"
            )
    get_method_class(cfg.method.name).validate(cfg.method)


def config_dir() -> Path:
    """configs/ as shipped in the wheel (prunekit/configs), else the repository's top-level folder."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"
