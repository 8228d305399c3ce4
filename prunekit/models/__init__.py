"""The model registry: a config's ``model.name`` picks a builder that fits the network to the data.

Every builder takes the ``model`` config node, the shape of one input sample (e.g. ``(1, 28, 28)``
or ``(16,)``) and the number of classes, and returns an ``nn.Module`` that maps a batch of such
samples to logits. Prunable layers (``nn.Linear``, ``nn.Conv2d``) appear in ``named_modules()`` in
forward order, which the per-layer tables and pathway figures rely on.
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

from omegaconf import DictConfig
from torch import nn

from prunekit.config import choice
from prunekit.models.mlp import build_mlp

Builder = Callable[[DictConfig, tuple[int, ...], int], nn.Module]


class ModelEntry(NamedTuple):
    """A registered model family: its builder and a one-line description for ``prunekit list``."""

    build: Builder
    description: str


def _on_first_use(module: str, function: str) -> Builder:
    """A builder from ``prunekit.models.<module>``, imported when called: the convolutional families need
    torchvision, which takes over a second to import, and an MLP run never does."""

    def build(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return getattr(importlib.import_module(f"prunekit.models.{module}"), function)(cfg, input_shape, num_classes)

    return build


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(build_mlp, "fully connected ReLU network on flattened inputs (default LeNet-300-100)"),
    "cnn": ModelEntry(_on_first_use("cnn", "build_cnn"),
                      "small VGG-style CNN with BatchNorm for MNIST-sized images (conv widths configurable)"),
    "vgg16": ModelEntry(_on_first_use("vgg", "build_vgg16"),
                        "VGG-16 with BatchNorm; variant small (32x32 images) or imagenet"),
    "resnet18": ModelEntry(_on_first_use("resnet", "build_resnet18"),
                           "ResNet-18; variant small (3x3 stem, no max-pool) or imagenet"),
}


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the network named by ``cfg.name`` for samples of ``input_shape`` and ``num_classes`` classes.

    Raises ``UserError`` for an unknown name or a configuration the network cannot take (unknown
    variant, pretrained weights with the small variant, images too small for the variant, missing
    pretrained weight file).
    """
    choice(cfg.name, list(MODELS), "model.name")
    return MODELS[cfg.name].build(cfg, tuple(input_shape), num_classes)
