"""The contract every registered model keeps, which masks, metrics, compaction and figures rely on: prunable
layers (Linear, Conv2d) listed by named_modules() in the order the forward pass calls them, every BatchNorm
called right after the convolution whose channels it normalises, and the classifier, a Linear with one output
per class, called last."""
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from prunekit.config import config_dir, register_schemas
from prunekit.layers import PRUNABLE, prunable_layers
from prunekit.models import MODELS, build_model

NUM_CLASSES = 7
SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 28, 28)}
VARIANTS = {"vgg16": ("small", "imagenet"), "resnet18": ("small", "imagenet")}
CASES = [pytest.param(name, variant, marks=[pytest.mark.slow] if (name, variant) == ("vgg16", "imagenet") else [])
         for name in MODELS for variant in VARIANTS.get(name, (None,))]


def _build(name: str, variant: str | None) -> tuple[nn.Module, tuple[int, ...]]:
    """The model as a run builds it: its config group file composed, with the variant asked for."""
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = compose("train", overrides=[f"model={name}", *([f"model.variant={variant}"] if variant else [])])
    shape = SHAPES.get(name, (3, 32, 32))
    torch.manual_seed(0)
    return build_model(cfg.model, shape, NUM_CLASSES), shape


def _call_order(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """The prunable and BatchNorm modules in the order one forward pass calls them."""
    called, handles = [], []
    for name, module in model.named_modules():
        if isinstance(module, (*PRUNABLE, nn.BatchNorm2d)):
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: called.append((name, m))))
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, *shape))
    for handle in handles:
        handle.remove()
    return called


@pytest.mark.parametrize("name, variant", CASES)
def test_every_model_keeps_the_layer_contract(name, variant):
    model, shape = _build(name, variant)
    called = _call_order(model, shape)
    prunable = [entry for entry in called if isinstance(entry[1], PRUNABLE)]
    assert [n for n, _ in prunable] == [n for n, _ in prunable_layers(model)], "prunable layers out of forward order"
    assert len({n for n, _ in prunable}) == len(prunable), "a prunable layer is called twice"
    for (before_name, before), (bn_name, bn) in zip(called, called[1:]):
        if isinstance(bn, nn.BatchNorm2d):
            assert isinstance(before, nn.Conv2d) and before.out_channels == bn.num_features, (bn_name, before_name)
    if isinstance(called[0][1], nn.BatchNorm2d):
        pytest.fail(f"{called[0][0]} is called before any convolution")
    classifier = prunable[-1][1]
    assert isinstance(classifier, nn.Linear) and classifier.out_features == NUM_CLASSES
