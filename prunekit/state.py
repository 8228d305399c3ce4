"""What travels from stage to stage: the model, its masks, the data it is fed, the method, what was measured.

A stage may replace the model (compaction makes it smaller) and the data view (removed input features
leave the data too); :meth:`RunState.replace_model` rebuilds the masks for the new model. Everything a
checkpoint needs to rebuild the state is in :class:`ModelSpec` and plain values: no pickled classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.data.view import DataView
from prunekit.layers import prunable_layers
from prunekit.models import build_model
from prunekit.pruning.compaction import CompactSpec, replay
from prunekit.pruning.masks import MaskSet


@dataclass
class ModelSpec:
    """What rebuilds a run's network on a fresh model: its config, the dataset's sample shape and number
    of classes, and the compaction replayed on it (None before compaction)."""

    model: dict
    input_shape: tuple[int, ...]  # of the dataset's samples, before any input feature was removed
    num_classes: int
    compaction: CompactSpec | None = None

    def build(self, device: torch.device) -> nn.Module:
        """The network with mask buffers registered (load a state_dict into it to get the weights)."""
        model = build_model(OmegaConf.create(self.model), self.input_shape, self.num_classes)
        if self.compaction is not None:
            replay(model, self.input_shape, self.compaction)
        MaskSet(model)
        return model.to(device)

    def build_full(self, device: torch.device) -> nn.Module:
        """The network in its original, uncompacted shapes (masks registered)."""
        return ModelSpec(self.model, self.input_shape, self.num_classes).build(device)

    def to_dict(self) -> dict:
        return {"model": self.model, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "compaction": self.compaction.to_dict() if self.compaction is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        compaction = CompactSpec.from_dict(data["compaction"]) if data["compaction"] is not None else None
        return cls(data["model"], tuple(data["input_shape"]), data["num_classes"], compaction)


@dataclass
class RunState:
    spec: ModelSpec
    model: nn.Module
    masks: MaskSet | None  # None only while being built: replace_model sets it
    data: DataView
    method: Any = None  # the PruningMethod, built by the pruning stage
    dense_metrics: dict = field(default_factory=dict)  # {"val": {...}, "test": {...}}; empty without a dense stage
    dense_hit: bool = False
    seconds: dict = field(default_factory=dict)  # per stage
    measured: dict = field(default_factory=dict)  # summary entries that stages measured on the way
    layers: list = field(default_factory=list)  # layers.csv rows of the masked network as pruned
    prunable_weights: int = 0  # weights of the prunable layers of the original network (0: count them now)
    rewind: dict | None = None  # the weights pruning rewinds to (prune.rewind=weights), masks excluded

    def __post_init__(self) -> None:
        if not self.prunable_weights:
            self.prunable_weights = sum(layer.weight.numel() for _, layer in prunable_layers(self.model))

    def density(self) -> float:
        """Kept prunable weights over those of the original network, compacted or not."""
        kept = sum(int(layer.weight_mask.sum()) for layer in self.masks.layers.values())
        return kept / self.prunable_weights

    def replace_model(self, model: nn.Module, spec: ModelSpec) -> None:
        """Swap in another network (its masks already registered as buffers) and the spec that rebuilds it;
        the data view follows the network's inputs."""
        kept = spec.compaction.inputs_kept if spec.compaction is not None else None
        first = prunable_layers(model)[0][1]
        self.data = self.data.narrowed(kept, flattened=isinstance(first, nn.Linear))
        self.model, self.spec, self.masks = model, spec, MaskSet(model, self.data.input_shape)

    def checkpoint(self) -> dict:
        """The part of last.pt that rebuilds this state (see :func:`restore`)."""
        return {"spec": self.spec.to_dict(), "model": self.model.state_dict(),
                "method": self.method.state_dict() if self.method is not None else None,
                "dense_metrics": self.dense_metrics, "dense_hit": self.dense_hit, "seconds": self.seconds,
                "measured": self.measured, "layers": self.layers, "prunable_weights": self.prunable_weights,
                "rewind": self.rewind}

    @classmethod
    def restore(cls, saved: dict, data: DataView, device: torch.device) -> RunState:
        """The state a checkpoint made with :meth:`checkpoint` describes (the method is rebuilt by its stage)."""
        spec = ModelSpec.from_dict(saved["spec"])
        model = spec.build(device)
        model.load_state_dict(saved["model"])
        state = cls(spec, model, None, data, dense_metrics=saved["dense_metrics"],
                    dense_hit=saved["dense_hit"], seconds=dict(saved["seconds"]), measured=dict(saved["measured"]),
                    layers=list(saved["layers"]), prunable_weights=saved["prunable_weights"],
                    rewind=saved.get("rewind"))
        state.replace_model(model, spec)
        return state
