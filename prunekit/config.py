"""Typed schemas for every config group, stored in Hydra's ConfigStore.

Each YAML file of a group names its schema in its defaults list (``/schema/<group>/<name>@_here_``),
so a misspelt key or a value of the wrong type fails when the config is composed, before any work.
Value ranges are declared beside the fields (:func:`ranged`) and checked, with everything a type
cannot express, by :mod:`prunekit.validation` before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from prunekit.errors import UserError


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
class SyntheticDataConfig(DataConfig):
    samples: int = ranged(2000, 1)
    features: int = ranged(16, 1)
    informative: int = ranged(8, 1)
    num_classes: int = ranged(4, 2)
    shape: list[int] = ranged([], 1)  # e.g. [1, 4, 4] to present features as an image


@dataclass
class Caltech101DataConfig(DataConfig):
    image_size: int = ranged(64, 1)  # every image is resized once to image_size x image_size and cached
    test_fraction: float = ranged(0.2, 0.0, 1.0, low_open=True, high_open=True)  # per-class share of the test split
    split_seed: int = ranged(0, 0)  # the split is fixed by this seed, not by the run's seed


@dataclass
class ImageNetDataConfig(DataConfig):
    # Shorter side resized to image_size * 8 / 7, then a centre crop of image_size (224: the usual 256 -> 224).
    image_size: int = ranged(224, 1)


@dataclass
class ModelConfig:
    name: str = MISSING
    # A state_dict to start from (e.g. a prunekit checkpoints/dense.pt trained on another dataset); the
    # classifier keeps the rows of the selected classes when the file was trained on a set containing them.
    weights: Optional[str] = None


@dataclass
class MLPConfig(ModelConfig):
    hidden: list[int] = ranged([300, 100], 1)
    dropout: float = ranged(0.0, **FRACTION)  # dropout after every hidden ReLU; 0 adds no Dropout layer


@dataclass
class CNNConfig(ModelConfig):
    # Convolution widths per block; every convolution is 3x3 with BatchNorm and ReLU, a 2x2 max-pool ends a block.
    blocks: list[list[int]] = field(default_factory=lambda: [[32, 32], [64, 64], [128]])
    hidden: int = ranged(128, 1)  # the one hidden Linear layer before the classifier


@dataclass
class ConvNetConfig(ModelConfig):
    variant: str = "small"  # small: 32x32 inputs (3x3 stem); imagenet: the torchvision network
    # torchvision ImageNet weights; the classifier keeps the selected classes' rows on dataset=imagenet and is
    # replaced for any other dataset (prunekit/models/weights.py)
    pretrained: bool = False


@dataclass
class MethodConfig:
    name: str = MISSING
    # fraction of prunable groups removed (weights, or units for unit granularity)
    sparsity: float = ranged(0.9, **FRACTION)
    granularity: str = "weight"  # weight | unit | input (which of them a method supports: prunekit list)
    # global: one threshold over all layers; layer: the same fraction per layer; auto: global for weights, layer
    # for units and input features (prunekit/pruning/selection.py says why)
    scope: str = "auto"
    # Layer-collapse guard: the fewest groups every prunable layer keeps. >= 1: a count (units, input
    # features or weights); between 0 and 1: a fraction of the layer's groups; 0: no guard.
    min_keep: float = ranged(1.0, 0)
    normalize: str = "none"  # none | l2 | sum: divide each layer's scores by their L2 norm or sum before ranking
    # Reference samples of the methods that score units by the network's response (lrp, taylor, gradient;
    # the others read no data): k training samples per class drawn with the run's seed (the LRP paper's
    # scarce-data setting: 10), or null for one pass over the training split. Recomputed at every pruning step.
    samples_per_class: Optional[int] = ranged(None, 1)
    score_batch_size: int = ranged(256, 1)  # reference samples per forward/backward pass while scoring


@dataclass
class InputPruneConfig(MethodConfig):
    """method=inputprune (prunekit/pruning/methods/inputprune.py): input features and units, jointly."""

    granularity: str = "input"
    # Hidden units: the same fraction of every hidden layer (row norms of layers with different fan-in do not
    # compare; scope=global with normalize=l2 ranks them together instead).
    scope: str = "layer"
    sparsity: float = ranged(0.0, **FRACTION)  # fraction of hidden units removed (0: input features only)
    input_sparsity: float = ranged(0.5, **FRACTION)  # fraction of input features (pixels; CNN: channels) removed
    lam: float = ranged(1e-4, 0)  # group lasso on the input groups: lam * sum of each group's L2 norm
    lam_units: float = ranged(0.0, 0)  # the same on the hidden units' weight rows (0: off)


@dataclass
class LRPConfig(MethodConfig):
    composite: str = "epsilon_plus"  # epsilon_plus: z+ on convs, epsilon on linear layers; zplus: z+ on both


@dataclass
class CresprConfig(MethodConfig):
    """method=crespr (prunekit/pruning/methods/crespr.py): our reading of the CRESPR abstract (DESIGN.md 2.4)."""

    sparsity: float = ranged(0.99, **FRACTION)
    clusters: int = ranged(4, 1)  # K: input clusters of an MLP, modules of every hidden layer
    # correlation | spatial | random: how an MLP's input features are grouped (a CNN's first convolution reads all
    # image channels, so there the option has nothing to group)
    cluster_by: str = "correlation"
    cross: float = ranged(0.0, **FRACTION)  # share of the surviving weights that may join two different modules
    criterion: str = "magnitude"  # magnitude: |w|; obd: 0.5 * H_ii * w^2 (Optimal Brain Damage)
    hessian: str = "fisher"  # fisher | hutchinson: how criterion=obd estimates H_ii (prunekit/pruning/hessian.py)
    hessian_batches: int = ranged(1, 1)  # training batches of score_batch_size per estimate, drawn anew at every step
    hessian_probes: int = ranged(1, 1)  # Rademacher probes per batch (hutchinson)


@dataclass
class GumbelConfig(MethodConfig):
    """method=gumbel (prunekit/pruning/methods/gumbel.py; the defaults are argued in configs/method/gumbel.yaml)."""

    target: str = "scheduled"  # scheduled: rho_target follows the schedule, exact top-k; emergent: rho_target = 0
    lam: float = ranged(1e-3, 0)  # density-term pull per gate: lam * N * |rho_target - density|, one value for any N
    tau: float = ranged(3.0, **POSITIVE)  # Gumbel-Softmax temperature
    tau_final: Optional[float] = ranged(None, **POSITIVE)  # anneal tau geometrically to this; null: fixed tau
    gate_lr: float = ranged(0.1, **POSITIVE)  # learning rate of the keep-minus-drop logits (weights use the stage's lr)
    # The gates' own optimiser, whatever the stage's optimiser does to the weights: adam (the authors' tutorial)
    # or sgd (with the stage's momentum). The gates get no weight decay either way.
    gate_optimizer: str = "adam"
    # starting keep probability sigmoid(keep - drop)
    init_keep: float = ranged(0.95, 0.0, 1.0, low_open=True, high_open=True)


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
    optimizer: str = "sgd"  # sgd | adam
    lr: float = ranged(0.05, **POSITIVE)
    momentum: float = ranged(0.9, **FRACTION)
    weight_decay: float = ranged(5e-4, 0)
    lr_schedule: str = "cosine"  # cosine | constant | cycle (prune only: cosine restarted at every pruning step)


@dataclass
class CudnnConfig:
    # CUDA only: time cuDNN's convolution algorithms per input shape and keep the fastest (off if deterministic)
    benchmark: bool = True


@dataclass
class TrainConfig:
    data: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    schedule: Any = MISSING
    train: OptimConfig = field(default_factory=OptimConfig)
    prune: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=5, lr=0.01))
    finetune: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=3, lr=0.01))
    seed: int = ranged(0, 0)
    device: str = "auto"  # auto | cpu | cuda
    resume: bool = False
    debug: bool = False
    eval_batch_size: int = ranged(1024, 1)
    compact: bool = True  # make the pruned network physically smaller before fine-tuning (compact.pt)
    latency: bool = True  # time the dense, masked and compact networks at the end (median after warm-up)
    figures: bool = True  # the method's figures at the end (big sweeps may skip them; prunekit explain draws them)
    cache_dir: str = "${oc.env:PRUNEKIT_CACHE,'~/.cache/prunekit/dense'}"
    # How training and evaluation use the device (prunekit/acceleration.py); the defaults are plain fp32 eager.
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast; fp16 adds a gradient scaler (and is ~25x slower on CPU)
    channels_last: bool = False  # conv networks and their batches in NHWC (GPU tensor cores); no effect on an MLP
    compile: bool = False  # torch.compile the training forward; each training stage compiles (20-40 s on 2 CPU cores)
    # torch.use_deterministic_algorithms (+ CUBLAS_WORKSPACE_CONFIG on CUDA, cudnn.benchmark off): the same numbers
    # run after run on one GPU, at the cost of slower GPU convolutions, and a stop with torch's error at an op that
    # has no deterministic kernel. The CPU kernels prunekit uses are deterministic already: no change there.
    deterministic: bool = False
    cudnn: CudnnConfig = field(default_factory=CudnnConfig)
    paper: dict[str, Any] = field(default_factory=dict)  # an experiment's published claim, free-form, for reports


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, name, node in [
        ("data", "base", DataConfig),
        ("data", "synthetic", SyntheticDataConfig),
        ("data", "caltech101", Caltech101DataConfig),
        ("data", "imagenet", ImageNetDataConfig),
        ("model", "mlp", MLPConfig),
        ("model", "cnn", CNNConfig),
        ("model", "convnet", ConvNetConfig),
        ("method", "base", MethodConfig),
        ("method", "gumbel", GumbelConfig),
        ("method", "lrp", LRPConfig),
        ("method", "inputprune", InputPruneConfig),
        ("method", "crespr", CresprConfig),
        ("schedule", "base", ScheduleConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node)


def choice(value: Any, allowed: list[str], key: str) -> None:
    """Raise a one-line UserError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def config_dir() -> Path:
    """configs/ as shipped in the wheel (prunekit/configs), else the repository's top-level folder."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"
