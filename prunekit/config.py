"""Typed schemas of the run and the base schema of every config group, stored in Hydra's ConfigStore.

A method, model, dataset or schedule with options of its own keeps its schema (a subclass of the group's base
here) beside it, and its registry stores it as ``schema/<group>/<name>``; each YAML file of a group names its
schema in its defaults list (``/schema/<group>/<name>@_here_``), so a misspelt key or a value of the wrong
type fails when the config is composed, before any work. Value ranges (:func:`ranged`) and allowed values
(:func:`one_of`) are declared beside the fields and checked, with everything a type cannot express, by
:mod:`prunekit.validation` before any work.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from prunekit.errors import UserError
from prunekit.registry import REGISTRIES


@dataclass(frozen=True)
class Range:
    """The values a numeric option may take: ``low`` and ``high`` with open or closed ends."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def ranged(default: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False) -> Any:
    """A dataclass field whose value (or, for a list, every element) must lie in the given range;
    :func:`prunekit.validation.check_schema` enforces it before any run starts."""
    spec = Range(low, high, low_open, high_open)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": spec})
    return field(default=default, metadata={"range": spec})


def one_of(default: str, *allowed: str) -> Any:
    """A dataclass field whose value must be one of ``allowed``: declared once, checked by
    :func:`prunekit.validation.check_schema` before any run starts, and listed by the docs and ``prunekit list``."""
    return field(default=default, metadata={"choices": allowed})


FRACTION = {"low": 0.0, "high": 1.0, "high_open": True}  # [0, 1)
POSITIVE = {"low": 0.0, "low_open": True}  # > 0


@dataclass
class AugmentConfig:
    crop_padding: int = ranged(0, 0)  # random crop after zero-padding by this many pixels; 0 turns it off
    hflip: bool = False  # random horizontal flip


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = "${oc.env:PRUNEKIT_DATA,'~/.cache/prunekit/data'}"
    download: bool = False
    val_fraction: float = ranged(0.1, **FRACTION)  # carved from train, seeded; the test split is only used at the end
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Keep only some classes (relabelled 0..K-1 in the order given): their labels in the full dataset, or
    # class_subset=K classes drawn with the run's seed. At most one of the two.
    classes: Optional[list[int]] = ranged(None, 0)
    class_subset: Optional[int] = ranged(None, 2)


@dataclass
class ModelConfig:
    name: str = MISSING
    # A state_dict to start from (e.g. a prunekit checkpoints/dense.pt trained on another dataset); the
    # classifier keeps the rows of the selected classes when the file was trained on a set containing them.
    weights: Optional[str] = None


@dataclass
class MethodConfig:
    name: str = MISSING
    # fraction of prunable groups removed (weights, or units for unit granularity)
    sparsity: float = ranged(0.9, **FRACTION)
    granularity: str = one_of("weight", "weight", "unit", "input")  # which of them a method supports: prunekit list
    # global: one threshold over all layers; layer: the same fraction per layer; auto: global for weights, layer
    # for units and input features (prunekit/pruning/selection.py says why)
    scope: str = one_of("auto", "auto", "global", "layer")
    # Layer-collapse guard: the fewest groups every prunable layer keeps. >= 1: a count (units, input
    # features or weights); between 0 and 1: a fraction of the layer's groups; 0: no guard.
    min_keep: float = ranged(1.0, 0)
    # divide each layer's scores by their L2 norm or their sum before ranking
    normalize: str = one_of("none", "none", "l2", "sum")
    # Reference samples of the methods that score units by the network's response (lrp, taylor, gradient;
    # the others read no data): k training samples per class drawn with the run's seed (the LRP paper's
    # scarce-data setting: 10), or null for one pass over the training split. Recomputed at every pruning step.
    samples_per_class: Optional[int] = ranged(None, 1)
    score_batch_size: int = ranged(256, 1)  # reference samples per forward/backward pass while scoring
    # Unit granularity: how the unit scores of the layers writing one coupled channel (a residual stream's
    # convolutions) combine into the channel's score (prunekit/pruning/coupling.py), and the multiple every
    # group's channel count is kept at (1: any count).
    group_reduction: str = one_of("sum", "sum", "mean", "max")
    round_to: int = ranged(1, 1)
    # Instead of method.sparsity, prune to a cost (unit or input granularity): the compact network keeps at most
    # this fraction of the dense FLOPs, or of the parameters (prunekit/pruning/budget.py) ...
    target_flops: Optional[float] = ranged(None, 0.0, 1.0, low_open=True)
    target_params: Optional[float] = ranged(None, 0.0, 1.0, low_open=True)
    # ... or to explicit fractions per layer: {layer: fraction}, or a YAML file of that mapping (prunekit
    # sensitivity writes one); a layer not named is not pruned.
    layer_sparsity: Any = None
    # Weight granularity: N:M sparsity instead of method.sparsity, e.g. 2:4 keeps 2 of every 4 consecutive weights
    # of a row (prunekit/pruning/patterns.py)
    pattern: Optional[str] = None


@dataclass
class ScheduleConfig:
    name: str = MISSING
    initial_sparsity: float = ranged(0.0, **FRACTION)
    start: float = ranged(0.0, 0.0, 1.0)  # fraction of the pruning stage where sparsity starts to grow
    end: float = ranged(0.5, 0.0, 1.0)  # fraction of the pruning stage where the target is reached
    frequency: int = ranged(10, 1)  # optimiser steps between mask updates
    steps: int = ranged(5, 1)  # number of equal steps (iterative only)


@dataclass
class OptimConfig:
    epochs: int = ranged(10, 0)
    batch_size: int = ranged(128, 1)
    optimizer: str = one_of("sgd", "sgd", "adam")
    lr: float = ranged(0.05, **POSITIVE)
    momentum: float = ranged(0.9, **FRACTION)
    weight_decay: float = ranged(5e-4, 0)
    # cycle (prune only): cosine restarted at every pruning step
    lr_schedule: str = one_of("cosine", "cosine", "constant", "cycle")


@dataclass
class PruneStageConfig(OptimConfig):
    # After every pruning step (prunekit/stages/rewind.py): none keeps training the weights as they are; weights
    # puts the surviving weights back to their values after prune.rewind_iteration optimiser steps of the dense
    # training (a lottery ticket; 0 is the initialisation) and the learning-rate schedule starts over; lr keeps
    # the weights and starts the learning-rate schedule over (learning-rate rewinding)
    rewind: str = one_of("none", "none", "weights", "lr")
    rewind_iteration: int = ranged(0, 0)


@dataclass
class FinetuneStageConfig(OptimConfig):
    # Re-initialise the surviving weights at random before fine-tuning (the lottery-ticket paper's control: the
    # same masks, fresh weights)
    reinit: bool = False


@dataclass
class CudnnConfig:
    # CUDA only: time cuDNN's convolution algorithms per input shape and keep the fastest (off if deterministic)
    benchmark: bool = True


@dataclass
class DistributedConfig:
    # Ranks of one run on this machine, started by torch.distributed's launcher (prunekit/distributed); each takes
    # an equal share of every batch of train.batch_size (the global batch), so 1 and N ranks train the same schedule
    nproc: int = ranged(1, 1)
    # nccl on CUDA, gloo on the CPU (auto); gloo on CUDA works too, slower
    backend: str = one_of("auto", "auto", "nccl", "gloo")
    # BatchNorm statistics over the global batch (torch's SyncBatchNorm, CUDA only); false: each rank's share
    sync_bn: bool = False


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    schedule: Any = MISSING
    train: OptimConfig = field(default_factory=OptimConfig)
    prune: PruneStageConfig = field(default_factory=lambda: PruneStageConfig(epochs=5, lr=0.01))
    finetune: FinetuneStageConfig = field(default_factory=lambda: FinetuneStageConfig(epochs=3, lr=0.01))
    seed: int = ranged(0, 0)
    device: str = one_of("auto", "auto", "cpu", "cuda")
    resume: bool = False
    debug: bool = False
    eval_batch_size: int = ranged(1024, 1)
    compact: bool = True  # make the pruned network physically smaller before fine-tuning (compact.pt)
    latency: bool = True  # time the dense, masked and compact networks at the end (median after warm-up)
    figures: bool = True  # the method's figures at the end (big sweeps may skip them; prunekit explain draws them)
    cache_dir: str = "${oc.env:PRUNEKIT_CACHE,'~/.cache/prunekit/dense'}"
    # How training and evaluation use the device (prunekit/acceleration.py); the defaults are plain fp32 eager.
    # autocast; fp16 adds a gradient scaler (and is ~25x slower on CPU)
    precision: str = one_of("fp32", "fp32", "bf16", "fp16")
    channels_last: bool = False  # conv networks and their batches in NHWC (GPU tensor cores); no effect on an MLP
    compile: bool = False  # torch.compile the training forward; each training stage compiles (20-40 s on 2 CPU cores)
    # torch.use_deterministic_algorithms (+ CUBLAS_WORKSPACE_CONFIG on CUDA, cudnn.benchmark off): the same numbers
    # run after run on one GPU, at the cost of slower GPU convolutions, and a stop with torch's error at an op that
    # has no deterministic kernel. The CPU kernels prunekit uses are deterministic already: no change there.
    deterministic: bool = False
    cudnn: CudnnConfig = field(default_factory=CudnnConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    # The experiment trackers (prunekit/trackers), one node per chosen one: logger=tensorboard, logger=[a,b]
    logger: Any = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)  # an experiment's published claim, free-form, for reports


# The modules that hold a registry whose entries are config groups (prunekit/registry.py); imported by name so
# that this low-level module depends on none of them.
REGISTRY_MODULES = ("prunekit.data.registry", "prunekit.models", "prunekit.pruning.methods",
                    "prunekit.pruning.schedules", "prunekit.trackers")


def register_schemas() -> None:
    """Store the run's schema and every registered entry's schema (prunekit's own and the plug-ins') in Hydra's
    ConfigStore; idempotent. Call it before composing a config."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    for module in REGISTRY_MODULES:
        importlib.import_module(module)
    for registry in REGISTRIES:
        registry.load()


def choice(value: Any, allowed: list[str], key: str) -> None:
    """Raise a one-line UserError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def config_dir() -> Path:
    """configs/ as shipped in the wheel (prunekit/configs), else the repository's top-level folder."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"
