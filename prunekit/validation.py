"""Every check a composed config must pass before a run starts, so a bad value fails at once, with one
line that names it, and nothing is written.

Four checks come from the schemas themselves (prunekit/config.py and the configs beside each registered
method, model and dataset): no key outside a schema (a ``+`` override can add one, Hydra does not object),
every float finite, every numeric value inside the range declared beside its field, every value of a field
with a fixed set of choices one of them. The rest are relations between options that no single field can express.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from omegaconf import DictConfig, ListConfig

from prunekit.distributed.launch import check_config as check_distributed
from prunekit.errors import UserError
from prunekit.trackers import check_installed
from prunekit.models import weights
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.schedules import SCHEDULES

FREE_FORM = ("paper",)  # an experiment's published table: any keys, read only by reports


def _schema_fields(node: DictConfig) -> dict[str, dataclasses.Field] | None:
    """The fields of the dataclass a config node was built from, or None for a plain dict node."""
    kind = node._metadata.object_type
    return {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None


def constraints(schema: type, key: str) -> dict:
    """The range and choices declared for ``key`` by the dataclass ``schema`` or, where a subclass only changes the
    default, by the nearest base class that declares them."""
    found: dict = {}
    for kind in reversed(schema.__mro__):
        fields = {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}
        if key in fields:
            found.update(fields[key].metadata)
    return found


def _check_value(key: str, value: Any, spec, choices: tuple[str, ...] | None = None) -> None:
    if choices is not None and value not in choices:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(choices)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}={value} is not a finite number; give a finite value")
    if spec is not None and not spec.contains(value):
        raise UserError(f"{key}={value} is outside the allowed range {spec}")


def check_schema(node: DictConfig, prefix: str = "") -> None:
    """Walk ``node``: reject keys its schema does not declare, non-finite floats and out-of-range values."""
    fields = _schema_fields(node)
    for key in node.keys():
        path = f"{prefix}{key}"
        if path in FREE_FORM:
            continue
        if fields is not None and key not in fields:
            raise UserError(
                f"{path} is not an option (was it added with +?); options there: {', '.join(fields)}"
            )
        metadata = constraints(node._metadata.object_type, key) if fields is not None else {}
        spec = metadata.get("range")
        value = node._get_node(key)
        if isinstance(value, DictConfig):
            check_schema(value, f"{path}.")
        elif isinstance(value, ListConfig):
            for index, item in enumerate(value if not value._is_none() else []):
                _check_value(f"{path}[{index}]", item, spec)
        else:
            _check_value(path, node[key], spec, metadata.get("choices"))


def validate(cfg: DictConfig, given: frozenset[str] = frozenset()) -> None:
    """All checks of a composed config (without its ``hydra`` node); method-specific ones live with the method.
    ``given``: the keys the command line set (see :func:`check_unused`)."""
    check_schema(cfg)
    if not (cfg.train.epochs or cfg.prune.epochs or cfg.finetune.epochs or weights.given(cfg.model)):
        raise UserError("nothing trains this network: train.epochs, prune.epochs and finetune.epochs are 0 and "
                        "neither model.weights nor model.pretrained gives it weights; add model.weights=PATH "
                        "(e.g. a run's checkpoints/dense.pt) or train it")
    if cfg.schedule.end < cfg.schedule.start:
        raise UserError(f"schedule.end={cfg.schedule.end} comes before schedule.start={cfg.schedule.start}")
    for stage in ("train", "finetune"):
        if cfg[stage].lr_schedule == "cycle":
            raise UserError(f"{stage}.lr_schedule=cycle restarts the learning rate at each pruning step, which only "
                            "the prune stage has; choose cosine or constant")
    if cfg.prune.lr_schedule == "cycle" and not SCHEDULES.get(cfg.schedule.name).extra["stepped"]:
        raise UserError(
            f"prune.lr_schedule=cycle starts the learning rate over at each pruning step, but schedule="
            f"{cfg.schedule.name} prunes a little at every update; use schedule=iterative (or one_shot)"
        )
    if cfg.prune.rewind != "none" and not SCHEDULES.get(cfg.schedule.name).extra["stepped"]:
        raise UserError(f"prune.rewind={cfg.prune.rewind} starts training over after every pruning step, but schedule="
                        f"{cfg.schedule.name} prunes a little at every update; use schedule=imp, iterative or one_shot")
    weights.check_request(cfg.model)
    check_distributed(cfg)
    check_installed(cfg.logger)
    method_class = get_method_class(cfg.method.name)
    method_class.validate(cfg)
    target = method_class.schedule_target(cfg.method)
    if cfg.schedule.initial_sparsity > target:
        raise UserError(f"schedule.initial_sparsity={cfg.schedule.initial_sparsity} exceeds the target the schedule "
                        f"climbs to ({target:g} for method={cfg.method.name}); it must be at most the target")
    check_unused(cfg.method, method_class.unused_options(cfg.method), given)


def check_unused(method: DictConfig, unused: dict[str, str], given: frozenset[str]) -> None:
    """Refuse a method option given on the command line away from its default when the run does not read it.

    Only options the user gave are refused: an experiment preset serves every method of its comparison, so it
    may set an option that one of them does not read (method.samples_per_class for method=random)."""
    fields = _schema_fields(method) or {}
    for option, why in unused.items():
        value, field = method[option], fields.get(option)
        default = field.default if field is not None and field.default is not dataclasses.MISSING else None
        if f"method.{option}" in given and value != default:
            raise UserError(f"method.{option}={value} has no effect here: {why}; leave it out")
