"""VGG-16 with BatchNorm: the network of the LRP and input-pruning papers' VGG experiments."""
from __future__ import annotations

from collections import OrderedDict

from omegaconf import DictConfig
from torch import nn

from prunekit.models import register_model
from prunekit.models.adapt import ConvNetConfig, ConvSpec, build_variant, first_conv, kaiming_init
from prunekit.models.pretrained import imagenet_weights, pretrained_network


def _small(spec: ConvSpec, num_classes: int) -> nn.Sequential:
    """torchvision's VGG-16-BN convolution stack, global average pooling and one Linear(512, classes).

    The 4096-wide ImageNet classifier is dropped: on 32x32 images the stack ends at 1x1, and the
    usual CIFAR VGG has a single Linear layer. Max-pools round up (``ceil_mode``), which changes
    nothing for 32x32 but lets 28x28 and 8x8 images through the five halvings.
    """
    from torchvision.models import vgg  # a second to import: only runs of this network pay it

    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=True)
    for module in features:
        if isinstance(module, nn.MaxPool2d):
            module.ceil_mode = True
        elif isinstance(module, nn.Conv2d):
            kaiming_init(module)
    features[0] = first_conv(features[0], spec.in_channels, pretrained=False)
    return nn.Sequential(
        OrderedDict(
            features=features,
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(512, num_classes),
        )
    )


def _imagenet(spec: ConvSpec, num_classes: int) -> nn.Module:
    """torchvision's ``vgg16_bn``, optionally with ImageNet weights, its last Linear replaced."""
    from torchvision import models

    if spec.pretrained:
        net = pretrained_network(models.vgg16_bn, imagenet_weights("vgg16"))
    else:
        net = models.vgg16_bn()
    net.features[0] = first_conv(net.features[0], spec.in_channels, spec.pretrained)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    return net


VARIANTS = {"small": _small, "imagenet": _imagenet}


@register_model("vgg16", config=ConvNetConfig)
def build_vgg16(cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """VGG-16 with BatchNorm; variant small (32x32 images) or imagenet.

    ``cfg.variant`` small (32x32-ish images) or imagenet (torchvision's network).

    ``cfg.pretrained`` loads torchvision's ImageNet weights (imagenet variant only). The first
    convolution takes ``input_shape[0]`` channels; the classifier gives ``num_classes`` logits.
    """
    return build_variant("vgg16", VARIANTS, cfg, input_shape, num_classes)
