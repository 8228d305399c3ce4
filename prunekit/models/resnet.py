"""ResNet-18: the residual network of the LRP and input-pruning papers."""
from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from prunekit.models import register_model
from prunekit.models.adapt import ConvNetConfig, ConvSpec, build_variant, first_conv, kaiming_init
from prunekit.models.pretrained import imagenet_weights, pretrained_network


def _small(spec: ConvSpec, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, the usual CIFAR variant:
    the 7x7 stride-2 stem and the max-pool would shrink a 32x32 image to 8x8 before the first block."""
    from torchvision import models  # a second to import: only runs of this network pay it

    net = models.resnet18(num_classes=num_classes)
    net.conv1 = kaiming_init(nn.Conv2d(spec.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False))
    net.maxpool = nn.Identity()
    return net


def _imagenet(spec: ConvSpec, num_classes: int) -> nn.Module:
    """torchvision's ``resnet18``, optionally with ImageNet weights, its ``fc`` replaced."""
    from torchvision import models

    if spec.pretrained:
        net = pretrained_network(models.resnet18, imagenet_weights("resnet18"))
    else:
        net = models.resnet18()
    net.conv1 = first_conv(net.conv1, spec.in_channels, spec.pretrained)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


VARIANTS = {"small": _small, "imagenet": _imagenet}


@register_model("resnet18", config=ConvNetConfig)
def build_resnet18(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-18; variant small (3x3 stem, no max-pool) or imagenet.

    ``cfg.variant`` small (32x32-ish images) or imagenet (torchvision's network).

    ``cfg.pretrained`` loads torchvision's ImageNet weights (imagenet variant only). The first
    convolution takes ``input_shape[0]`` channels; ``fc`` gives ``num_classes`` logits.
    """
    return build_variant("resnet18", VARIANTS, cfg, input_shape, num_classes)
