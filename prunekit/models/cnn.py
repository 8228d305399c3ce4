"""A small VGG-style CNN: the LRP paper's kind of network at a size a CPU trains in minutes.

Blocks of 3x3 convolutions (each followed by BatchNorm and ReLU) end in a 2x2 max-pool; then a flatten,
one hidden Linear layer with ReLU, and the classifier. The default ``[[32, 32], [64, 64], [128]]`` on a
28x28 image ends at 128 x 3 x 3. Children are registered in forward order and every BatchNorm directly
follows its convolution, which is what zennit's SequentialMergeBatchNorm and prunekit's masks expect.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from omegaconf import DictConfig
from torch import nn

from prunekit.config import ModelConfig, ranged
from prunekit.errors import UserError
from prunekit.models import register_model
from prunekit.models.adapt import check_input_size


@dataclass
class CNNConfig(ModelConfig):
    # Convolution widths per block; every convolution is 3x3 with BatchNorm and ReLU, a 2x2 max-pool ends a block.
    blocks: list[list[int]] = field(default_factory=lambda: [[32, 32], [64, 64], [128]])
    hidden: int = ranged(128, 1)  # the one hidden Linear layer before the classifier

class CNN(nn.Sequential):
    """``features`` (conv-bn-relu ... pool per block), ``flatten``, ``fc`` + ``relu``, ``classifier``."""

    def __init__(self, in_channels: int, blocks: list[list[int]], hidden: int, num_classes: int, spatial: int):
        features: list[nn.Module] = []
        channels = in_channels
        for block in blocks:
            for width in block:
                features += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True)]
                channels = width
            features.append(nn.MaxPool2d(2))
        super().__init__(OrderedDict(
            features=nn.Sequential(*features),
            flatten=nn.Flatten(),
            fc=nn.Linear(channels * spatial, hidden),
            relu=nn.ReLU(inplace=True),
            classifier=nn.Linear(hidden, num_classes),
        ))

@register_model("cnn", config=CNNConfig)
def build_cnn(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> CNN:
    """Small VGG-style CNN with BatchNorm for MNIST-sized images (conv widths configurable).

    The CNN of ``cfg.blocks`` and ``cfg.hidden`` for images shaped ``input_shape`` (C, H, W)."""
    blocks = [[int(w) for w in block] for block in cfg.blocks]
    if not blocks or any(not block or min(block) < 1 for block in blocks):
        raise UserError(f"model.blocks={blocks} is not allowed; give non-empty blocks of positive widths")
    if len(input_shape) != 3:
        raise UserError(f"cnn needs image inputs shaped (channels, height, width); got {input_shape}")
    height, width = (size // 2 ** len(blocks) for size in input_shape[1:])
    if height < 1 or width < 1:
        raise UserError(f"input shape {input_shape} is too small for {len(blocks)} pooling blocks; use fewer blocks")
    make = lambda: CNN(input_shape[0], blocks, cfg.hidden, num_classes, height * width)  # noqa: E731
    check_input_size(make, input_shape, "cnn")
    return make()
