"""Fitting torchvision's convolutional networks to prunekit's datasets.

Shared by vgg.py and resnet.py: building the variant a config asks for from a family's registry of
variants, checking the ``variant``/``pretrained`` options, giving the first convolution the dataset's
number of channels, and rejecting images too small for a network before any weights are allocated
or downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from omegaconf import DictConfig
from torch import nn

from prunekit.config import ModelConfig, choice, one_of
from prunekit.errors import UserError


@dataclass
class ConvNetConfig(ModelConfig):
    """model=vgg16, model=resnet18: torchvision's networks fitted to the data."""

    # small: 32x32 inputs (3x3 stem); imagenet: the torchvision network
    variant: str = one_of("small", "small", "imagenet")
    # torchvision ImageNet weights; the classifier keeps the selected classes' rows on dataset=imagenet and is
    # replaced for any other dataset (prunekit/models/weights.py)
    pretrained: bool = False


Variant = Callable[["ConvSpec", int], nn.Module]


class ConvSpec(NamedTuple):
    """The checked options of a convolutional network: what its builder needs to know."""

    name: str
    variant: str
    pretrained: bool
    in_channels: int

    @property
    def label(self) -> str:
        """How messages name the network, e.g. ``vgg16 variant=small``."""
        return f"{self.name} variant={self.variant}"


def build_variant(
    name: str, variants: dict[str, Variant], cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """Build the variant ``cfg.variant`` of network ``name`` from its registry ``variants``.

    Options and input shape are checked first, then the architecture is dry-run without weights,
    so that nothing is allocated or downloaded for a configuration that cannot work.
    """
    spec = conv_spec(cfg, input_shape, name, list(variants))
    build = variants[spec.variant]
    check_input_size(lambda: build(spec._replace(pretrained=False), num_classes), input_shape, spec.label)
    return build(spec, num_classes)


def conv_spec(cfg: DictConfig, input_shape: tuple[int, ...], name: str, variants: list[str]) -> ConvSpec:
    """Check ``cfg.variant`` (one of ``variants``), ``cfg.pretrained`` and the input shape for ``name``."""
    choice(cfg.variant, variants, "model.variant")
    if len(input_shape) != 3:
        raise UserError(f"{name} needs image inputs shaped (channels, height, width); got {input_shape}")
    pretrained = bool(cfg.pretrained)
    if pretrained and cfg.variant != "imagenet":
        raise UserError(f"model.pretrained=true needs model.variant=imagenet; got variant={cfg.variant!r}")
    if pretrained and input_shape[0] not in (1, 3):
        raise UserError(
            f"{name} with pretrained weights takes 1 (grey) or 3 (RGB) input channels; got {input_shape[0]}"
        )
    return ConvSpec(name, cfg.variant, pretrained, input_shape[0])


def kaiming_init(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialise ``conv`` as torchvision initialises VGG and ResNet convolutions, so that a replaced
    stem starts like the rest of the network."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def first_conv(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """Return ``conv`` adapted to ``in_channels`` input channels (``conv`` itself if it already fits).

    For pretrained RGB weights and a grey input the kernels are summed over RGB: the new layer then
    responds to a grey image exactly as the pretrained one responds to that image copied into R, G and B.
    Otherwise the new layer is freshly initialised.
    """
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    if not pretrained:
        return kaiming_init(new)
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def check_input_size(make: Callable[[], nn.Module], input_shape: tuple[int, ...], label: str) -> None:
    """Raise ``UserError`` when the network that ``make()`` builds cannot process ``input_shape``.

    The network is built and run once on the meta device, which costs neither memory nor arithmetic,
    so a pooling layer that would shrink the feature map to nothing is caught here with a clear message
    instead of mid-training.
    """
    with torch.device("meta"):
        net = make().eval()
        try:
            net(torch.empty(1, *input_shape))
        except RuntimeError as exc:
            raise UserError(
                f"input shape {input_shape} is too small for {label}: a layer's output would be empty; "
                "use larger images or variant=small"
            ) from exc
