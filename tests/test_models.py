"""Model registry: every model and variant builds for grey and colour images; options are checked;
pretrained weights load from torch hub's cache and a missing file gives a usable error."""
from __future__ import annotations

import os
import urllib.error

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from prunekit.models.adapt import ConvNetConfig
from prunekit.models.mlp import MLPConfig
from prunekit.errors import UserError
from prunekit.models import MODELS, build_model
from prunekit.models.pretrained import weights_path


def conv_cfg(name: str, variant: str = "small", pretrained: bool = False):
    return OmegaConf.structured(ConvNetConfig(name=name, variant=variant, pretrained=pretrained))


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def test_registry_lists_every_model_with_a_description():
    assert set(MODELS) == {"mlp", "cnn", "vgg16", "resnet18"}
    assert all(entry.description and "\n" not in entry.description for entry in MODELS.entries())


def test_lenet_300_100_has_266610_parameters_and_linear_layers_in_forward_order():
    net = build_model(OmegaConf.structured(MLPConfig(name="mlp")), (1, 28, 28), 10)
    assert sum(p.numel() for p in net.parameters()) == 266_610
    linears = [(name, m.in_features, m.out_features) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    assert linears == [("fc1", 784, 300), ("fc2", 300, 100), ("fc3", 100, 10)]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_flattens_any_input_with_configured_hidden_sizes():
    net = build_model(OmegaConf.structured(MLPConfig(name="mlp", hidden=[5])), (3, 4, 4), 2)
    assert net.fc1.in_features == 48 and net(torch.zeros(3, 3, 4, 4)).shape == (3, 2)
    with pytest.raises(UserError, match="model.hidden"):
        build_model(OmegaConf.structured(MLPConfig(name="mlp", hidden=[5, 0])), (16,), 2)


@pytest.mark.parametrize(
    "name, variant, shape",
    [
        ("vgg16", "small", (1, 28, 28)),
        ("vgg16", "small", (3, 32, 32)),
        ("vgg16", "small", (1, 8, 8)),  # the digits images: pools round up instead of emptying the map
        ("resnet18", "small", (1, 28, 28)),
        ("resnet18", "small", (3, 32, 32)),
        pytest.param("vgg16", "imagenet", (1, 32, 32), marks=pytest.mark.slow),  # 138M parameters
        ("resnet18", "imagenet", (1, 32, 32)),
        ("resnet18", "imagenet", (3, 64, 64)),
    ],
)
def test_conv_nets_take_the_input_channels_and_give_one_logit_per_class(name, variant, shape):
    net = build_model(conv_cfg(name, variant), shape, 7).eval()
    assert first_conv(net).in_channels == shape[0]
    with torch.no_grad():
        assert net(torch.zeros(1, *shape)).shape == (1, 7)


def test_small_resnet_has_a_3x3_stride_1_stem_and_no_maxpool():
    net = build_model(conv_cfg("resnet18"), (3, 32, 32), 10)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)


@pytest.mark.parametrize(
    "cfg, shape, match",
    [
        (conv_cfg("vgg16", "tiny"), (3, 32, 32), "model.variant='tiny'"),
        (conv_cfg("resnet18", "small", pretrained=True), (3, 32, 32), "variant=imagenet"),
        (conv_cfg("vgg16", "imagenet"), (1, 8, 8), "too small for vgg16 variant=imagenet"),
        (conv_cfg("resnet18"), (16,), "image inputs"),
        (conv_cfg("resnet18", "imagenet", pretrained=True), (2, 32, 32), "1 \\(grey\\) or 3"),
        (OmegaConf.create({"name": "lenet5"}), (1, 28, 28), "model.name='lenet5'"),
    ],
)
def test_bad_model_options_raise_one_line_user_errors(cfg, shape, match):
    with pytest.raises(UserError, match=match) as info:
        build_model(cfg, shape, 10)
    assert "\n" not in str(info.value)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: any download attempt fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_missing_pretrained_weights_name_the_file_to_place(empty_hub):
    expected = os.path.join(str(empty_hub), "hub", "checkpoints", "resnet18-f37072fd.pth")
    with pytest.raises(UserError) as info:
        build_model(conv_cfg("resnet18", "imagenet", pretrained=True), (3, 32, 32), 10)
    message = str(info.value)
    assert expected in message and "place the file there" in message and "\n" not in message


def test_pretrained_weights_load_from_the_hub_cache_with_grey_stem_summed_over_rgb(empty_hub):
    reference = torchvision.models.resnet18()
    # torchvision's published checkpoints predate BatchNorm's num_batches_tracked buffer.
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = weights_path(torchvision.models.ResNet18_Weights.DEFAULT)
    assert path == os.path.join(str(empty_hub), "hub", "checkpoints", "resnet18-f37072fd.pth")
    os.makedirs(os.path.dirname(path))
    torch.save(state, path)

    grey = build_model(conv_cfg("resnet18", "imagenet", pretrained=True), (1, 32, 32), 5)
    assert torch.equal(grey.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(grey.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(grey.bn1.running_var, reference.bn1.running_var)
    assert grey.fc.out_features == 5 and grey.layer1[0].conv1.weight.requires_grad
    rgb = build_model(conv_cfg("resnet18", "imagenet", pretrained=True), (3, 32, 32), 5)
    assert torch.equal(rgb.conv1.weight, reference.conv1.weight)
    with torch.no_grad():
        assert grey.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 5)


def test_cnn_is_vgg_style_with_batchnorm_after_every_conv_and_refuses_too_many_pools():
    cfg = OmegaConf.create({"name": "cnn", "blocks": [[32, 32], [64, 64], [128]], "hidden": 128, "weights": None})
    net = build_model(cfg, (1, 28, 28), 10)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    kinds = [type(m).__name__ for m in net.features]
    assert kinds.count("Conv2d") == 5 and kinds.count("BatchNorm2d") == 5 and kinds.count("MaxPool2d") == 3
    assert all(kinds[i + 1] == "BatchNorm2d" for i, kind in enumerate(kinds) if kind == "Conv2d")
    assert net.fc.in_features == 128 * 3 * 3 and net.classifier.in_features == 128
    with pytest.raises(UserError, match="too small"):
        build_model(OmegaConf.create({**cfg, "blocks": [[8]] * 5}), (1, 28, 28), 10)
