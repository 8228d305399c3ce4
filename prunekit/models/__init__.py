"""The model registry: a config's ``model.name`` picks a builder that fits the network to the data.

Every builder takes the ``model`` config node, the shape of one input sample (e.g. ``(1, 28, 28)``
or ``(16,)``) and the number of classes, and returns an ``nn.Module`` that maps a batch of such
samples to logits. It is registered with :func:`register_model` in the file that defines it, its config
dataclass beside it. The network keeps the model contract (tests/test_model_contract.py, docs/models.md):
prunable layers (``nn.Linear``, ``nn.Conv2d``) appear in ``named_modules()`` in forward order, each
BatchNorm right after its convolution, the classifier last with one output per class.
"""
from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig
from torch import nn

from prunekit.config import ModelConfig
from prunekit.registry import Registry

Builder = Callable[[DictConfig, tuple[int, ...], int], nn.Module]

MODELS: Registry[Builder] = Registry("model", "model.name", group="model", base=ModelConfig,
                                     packages=("prunekit.models",))


def register_model(name: str, *, config: type | None = None, description: str | None = None) -> Callable:
    """Decorator: make the builder available as ``model=<name>`` (its docstring's first line describes it)."""
    return MODELS.register(name, config=config, description=description)


def build_model(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the network named by ``cfg.name`` for samples of ``input_shape`` and ``num_classes`` classes.

    Raises ``UserError`` for an unknown name or a configuration the network cannot take (unknown
    variant, pretrained weights with the small variant, images too small for the variant, missing
    pretrained weight file).
    """
    return MODELS.get(cfg.name).target(cfg, tuple(input_shape), num_classes)
