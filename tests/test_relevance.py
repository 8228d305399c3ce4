"""LRP relevance from zennit (prunekit.pruning.relevance): conservation, unit scores, and a model left untouched."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.errors import UserError
from prunekit.models import build_model
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.relevance import input_relevance, relevance_at, unit_relevance
from prunekit.pruning.units import unit_outputs

SPECS = {
    "cnn": ({"name": "cnn", "blocks": [[8, 8], [16]], "hidden": 32, "weights": None}, (1, 16, 16)),
    "vgg16": ({"name": "vgg16", "variant": "small", "pretrained": False, "weights": None}, (3, 32, 32)),
    "resnet18": ({"name": "resnet18", "variant": "small", "pretrained": False, "weights": None}, (3, 32, 32)),
}
SAMPLES = 4
NUM_CLASSES = 10


@functools.cache
def build(name: str) -> tuple[str, nn.Module, torch.Tensor, torch.Tensor]:
    """(name, model with masks and non-trivial BatchNorm statistics in eval mode, x, y); tests that change
    the model work on a copy."""
    cfg, shape = SPECS[name]
    torch.manual_seed(0)
    model = build_model(OmegaConf.create(cfg), shape, NUM_CLASSES)
    MaskSet(model)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics off their defaults (0 / 1), so merging BatchNorm does real work
            model(torch.randn(16, *shape) * 2.0 + 0.5)
    model.eval()
    return name, model, torch.randn(SAMPLES, *shape), torch.randint(0, NUM_CLASSES, (SAMPLES,))


# ResNet18's cases run in the full suite only (about 0.6 s each): the fast loop keeps VGG16's.
@pytest.fixture(params=[pytest.param(n, marks=pytest.mark.slow) if n.startswith("resnet") else n for n in SPECS])
def case(request):
    return build(request.param)


def conserving_points(name: str, model: nn.Module) -> dict[str, nn.Module]:
    """Outputs through which all relevance flows: ResNet's residual stages; in a network without branches
    every pooling stage (the relevance of a max-pool and a ReLU passes unchanged) and every unit output."""
    modules = dict(model.named_modules())
    if name == "resnet18":
        return {key: modules[key] for key in ("layer1", "layer2", "layer3", "layer4", "avgpool")}
    pools = {key: m for key, m in modules.items() if isinstance(m, (nn.MaxPool2d, nn.AdaptiveAvgPool2d))}
    return {**unit_outputs(model), **pools}


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {key: value.clone() for key, value in model.state_dict().items()},
        "objects": [(id(p), p.data_ptr(), p.shape) for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert list(after["state"]) == list(before["state"])  # no entry added or dropped (e.g. a merged bias)
    for key, value in before["state"].items():
        assert after["state"][key].dtype == value.dtype and torch.equal(after["state"][key], value), key
    assert after["objects"] == before["objects"]  # the same Parameter objects and storage: an optimiser's refs hold
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    for grad_after, grad_before in zip(after["grads"], before["grads"]):
        assert (grad_after is None) == (grad_before is None)
        assert grad_before is None or torch.equal(grad_after, grad_before)


@pytest.mark.parametrize("composite", ["epsilon_plus", "zplus"])
def test_relevance_is_conserved(case, composite):
    name, model, x, y = case
    points = conserving_points(name, model)
    before = snapshot(model)
    relevance = relevance_at(model, x, y, points, composite)
    assert list(relevance) == list(points)
    for key, value in relevance.items():
        # one-hot of the true class with value 1 per sample, biases out of the rules: N in every layer
        assert float(value.sum()) == pytest.approx(SAMPLES, rel=1e-2), key
    assert float(input_relevance(model, x, y, composite).sum()) == pytest.approx(SAMPLES, rel=1e-2)
    assert_untouched(model, before)


def test_resnet_batchnorm_outputs_hold_the_branches_relevance():
    """A merged BatchNorm's output carries its convolution's relevance in ResNet's canonized blocks too: the
    residual Sum splits a downsampling block's relevance between its two branches' BatchNorms."""
    _, model, x, y = build("resnet18")
    modules = dict(model.named_modules())
    blocks = ["layer2.0", "layer3.0", "layer4.0"]
    points = {k: modules[k] for block in blocks for k in (block, f"{block}.bn2", f"{block}.downsample.1")}
    relevance = relevance_at(model, x, y, points)
    for block in blocks:
        branches = relevance[f"{block}.bn2"] + relevance[f"{block}.downsample.1"]
        torch.testing.assert_close(branches, relevance[block], rtol=1e-3, atol=1e-6)
        assert relevance[f"{block}.bn2"].abs().sum() > 0 and relevance[f"{block}.downsample.1"].abs().sum() > 0


def test_unit_scores_leave_the_model_untouched(case):
    name, model, x, y = case
    model = copy.deepcopy(model)
    model.train()  # BatchNorm in train mode would update its running statistics
    (model.fc if name == "resnet18" else model.classifier).eval()  # a mixed mode, to be restored as such
    first = next(model.parameters())
    first.grad = torch.full_like(first, 0.5)  # an earlier step's gradient must survive unchanged
    outputs = unit_outputs(model)
    before = snapshot(model)
    scores = unit_relevance(model, [(x[:2], y[:2]), (x[2:], y[2:])], outputs)
    assert_untouched(model, before)
    layers = dict(model.named_modules())
    assert list(scores) == list(outputs)
    for key, score in scores.items():
        layer = layers[key]
        width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        assert score.shape == (width,), key
        assert bool(torch.isfinite(score).all()) and bool((score >= 0).all()), key
        assert float(score.sum()) > 0, key


@pytest.mark.parametrize("composite", ["epsilon_plus", "zplus"])
def test_pruned_filters_score_zero(case, composite):
    name, model, x, y = case
    model = copy.deepcopy(model)
    masks = MaskSet(model, SPECS[name][1])
    generator = torch.Generator().manual_seed(1)
    keep = {key: torch.rand(len(alive), generator=generator) < 0.5 for key, alive in masks.groups_alive("unit").items()}
    for kept in keep.values():
        kept[0] = True  # no layer dies completely
    masks.set_groups("unit", keep)
    keep = masks.groups_alive("unit")  # a channel of a residual stream stays while one of its writers keeps it
    before = snapshot(model)
    scores = unit_relevance(model, [(x, y)], unit_outputs(model), composite)
    assert_untouched(model, before)
    for key, score in scores.items():
        assert bool(torch.isfinite(score).all()), key
        assert bool((score[~keep[key]] == 0).all()), key
        assert float(score[keep[key]].sum()) > 0, key


def test_unknown_composite_is_a_user_error():
    _, model, x, y = build("cnn")
    with pytest.raises(UserError, match="epsilon_plus, zplus"):
        input_relevance(model, x, y, "alpha2beta1")
