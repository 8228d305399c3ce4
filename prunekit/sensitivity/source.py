"""The dense network of a run as ``prunekit sensitivity`` prunes it: rebuilt from the run's config and its
checkpoints/dense.pt (written once the dense stage is done), fed the run's data with the run's seed (so the
validation split is the run's), and the criterion that ranks its channels.

The criterion is the run's method, or another one named with ``--method``: any criterion registered for unit
granularity (magnitude, random, lrp, taylor, gradient, plug-ins). A training-time method (gumbel, inputprune,
crespr) decides what to prune while it trains, so there is no ranking of the dense network to read from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from prunekit import checkpoints, rng
from prunekit.acceleration import AcceleratedModel, Acceleration
from prunekit.config import MethodConfig
from prunekit.data import load_dataset
from prunekit.data.view import DataView
from prunekit.engine import evaluate
from prunekit.errors import UserError, file_errors, reason
from prunekit.pipeline import resolve_device
from prunekit.pruning.criteria import CRITERIA
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import get_method_class
from prunekit.rundir import RunDir
from prunekit.state import ModelSpec

CONFIG = Path(".hydra") / "config.yaml"
# What decides how many channels a ratio keeps: a criterion named with --method keeps the run's values, so the
# ratios it yields mean the same channel counts in the run.
COUNTING = ("min_keep", "round_to", "group_reduction")


@dataclass
class DenseRun:
    """The run's config, its dense network with masks (all channels alive), the data, the criterion's config
    (``method``, at unit granularity) and the dense weights every measurement starts from."""

    root: Path
    cfg: DictConfig
    method: DictConfig
    model: nn.Module
    masks: MaskSet
    data: DataView
    weights: dict[str, torch.Tensor]
    accelerated: AcceleratedModel  # the model in the run's precision and memory format, as the stages evaluate it

    def restore(self) -> None:
        """Back to the dense network: its weights and every mask."""
        self.model.load_state_dict(self.weights)
        self.masks.refresh()

    def val_accuracy(self) -> float:
        """Top-1 accuracy on the run's validation split, as the stages evaluate it."""
        return evaluate(self.model, self.data, "val", self.cfg.eval_batch_size, self.accelerated)["accuracy"]

    def scores(self) -> dict[str, torch.Tensor]:
        """The criterion's unit scores of the dense network, per layer (higher is kept)."""
        method_class = get_method_class(self.method.name)
        return method_class(self.method, self.model, self.masks, self.data, self.cfg.seed).scores()


def read_config(root: Path) -> DictConfig:
    """The run's composed config; a folder that is no prunekit run is one line."""
    path = root / CONFIG
    if not path.is_file():
        raise UserError(f"{root} is not a prunekit run (no {CONFIG}); give the folder of a `prunekit train` run")
    with file_errors(path, "read"):
        text = path.read_text()
    try:
        cfg = OmegaConf.create(yaml.safe_load(text))
    except (yaml.YAMLError, ValueError) as err:
        raise UserError(f"{path} is not a run's config ({reason(err)})") from err
    if not all(key in cfg for key in ("data", "model", "method", "seed")):
        raise UserError(f"{path} is not a prunekit run's config (it lacks data, model, method or seed)")
    return cfg


def criterion_config(run_method: DictConfig, name: str | None) -> DictConfig:
    """The config of the criterion that ranks channels: the run's method, or ``name`` as ``prunekit train
    method=NAME`` composes it with the run's channel-counting options; at unit granularity, without a budget."""
    # A run made before an option existed lacks it: the schema's default is what that run did.
    run_method = OmegaConf.merge(OmegaConf.to_container(OmegaConf.structured(MethodConfig)), run_method)
    chosen = _check_criterion(name or run_method.name)
    if name is None and run_method.granularity != "unit":
        raise UserError(f"the run's method {chosen} prunes at granularity {run_method.granularity}; sensitivity "
                        "prunes channel groups (unit granularity): give --method NAME, a unit criterion")
    if chosen == run_method.name:
        method = OmegaConf.create(OmegaConf.to_container(run_method, resolve=True))
    else:
        method = OmegaConf.merge(_composed(chosen), {key: run_method[key] for key in COUNTING})
    method.granularity = "unit"
    method.target_flops = method.target_params = method.layer_sparsity = None
    return method


def _check_criterion(name: str) -> str:
    method_class: type[PruningMethod] = get_method_class(name)  # an unknown name is one line there
    if name not in CRITERIA or not method_class.allocates:
        raise UserError(f"method {name} is a training-time method (it decides what to prune while it trains); "
                        f"sensitivity ranks channels by a criterion: {', '.join(_unit_criteria())}")
    if "unit" not in method_class.granularities:
        raise UserError(f"method {name} does not score units (granularities: {', '.join(method_class.granularities)})"
                        f"; sensitivity prunes channel groups: choose one of {', '.join(_unit_criteria())}")
    return name


def _unit_criteria() -> list[str]:
    return [e.name for e in CRITERIA.entries() if "unit" in e.extra["granularities"]]


def _composed(name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="sensitivity"):
        node = compose("train", overrides=[f"method={name}"]).method
    return OmegaConf.create(OmegaConf.to_container(node, resolve=True))


def load_run(root: Path, cfg: DictConfig, method: str | None = None, device: str = "auto") -> DenseRun:
    """The dense network of the run in ``root`` (its config ``cfg``, from :func:`read_config`) on ``device`` with
    its data, ranked by ``method`` (None: the run's own)."""
    criterion = criterion_config(cfg.method, method)
    path = RunDir(root).checkpoint("dense")
    if not path.is_file():
        raise UserError(f"{root} has no {path.relative_to(root)} yet (written once the dense stage is done); give a "
                        "run whose dense network is trained")
    weights = checkpoints.read_state_dict(path)  # weights only: a file that names code is refused in one line
    on = resolve_device(device)
    rng.seed_all(cfg.seed)  # as the pipeline loads the data: the same validation split
    data = DataView(load_dataset(cfg.data, on, cfg.seed))
    spec = ModelSpec(OmegaConf.to_container(cfg.model, resolve=True), data.input_shape, data.num_classes)
    model = spec.build(on)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(f"{path} is not the dense network of this run's model ({reason(err)})") from err
    if not data.num_batches("val", cfg.eval_batch_size):
        raise UserError(f"the run in {root} has no validation split (data.val_fraction); sensitivity measures on "
                        "validation, never on the test split")
    accelerated = Acceleration.from_config(cfg, on).bind(model)
    return DenseRun(root, cfg, criterion, model, MaskSet(model, data.input_shape), data, weights, accelerated)
