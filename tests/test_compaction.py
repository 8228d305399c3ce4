"""Compaction: the physically smaller network gives the masked network's outputs, for every model family and
variant, after unit pruning (global and per layer) and input pruning; it rebuilds from its spec alone."""
import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig
from prunekit.models.adapt import ConvNetConfig
from prunekit.models.mlp import MLPConfig
from prunekit.data.view import DataView
from prunekit.engine import lr_factor
from prunekit.layers import is_mlp
from prunekit.models import build_model
from prunekit.pruning.compaction import compact, expand
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.state import ModelSpec

SHAPES = {"mlp": (1, 8, 8), "vgg16": (3, 32, 32), "resnet18": (3, 32, 32)}
FAMILIES = [("mlp", None), ("vgg16", "small"), ("resnet18", "small"), ("vgg16", "imagenet"), ("resnet18", "imagenet")]


def _model_cfg(name, variant):
    return OmegaConf.structured(MLPConfig(name="mlp") if name == "mlp" else ConvNetConfig(name=name, variant=variant))


@pytest.fixture(scope="module")
def networks():
    """One freshly built network per family, with BatchNorm statistics and affine entries that matter."""
    torch.manual_seed(0)
    built = {}
    for name, variant in FAMILIES:
        model = build_model(_model_cfg(name, variant), SHAPES[name], 10)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.3, 0.3)
        built[(name, variant)] = model.eval()
    return built


def _pruned(model, shape, granularity, sparsity, scope):
    model = copy.deepcopy(model)
    masks = MaskSet(model, shape)
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig),
                          {"name": "magnitude", "granularity": granularity, "scope": scope})
    get_method_class("magnitude")(cfg, model, masks, None, 0).prune(sparsity)
    return model.eval()


def _narrow(x, model, spec):
    if spec.inputs_kept is None:
        return x
    return x.flatten(1)[:, spec.inputs_kept] if is_mlp(model) else x[:, spec.inputs_kept]


def _assert_same_outputs(masked, shape):
    small, spec = compact(masked, shape, is_mlp(masked))
    x = torch.randn(3, *shape)
    with torch.no_grad():
        expected, got = masked(x), small(_narrow(x, masked, spec))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    return small, spec


# Every family at every sparsity and scope, except VGG16-imagenet (138M parameters, ~5 s a case): its convolutions
# are VGG16-small's, so two cases cover what is its own, the 4096-wide classifier behind the adaptive pooling.
# The fast loop keeps every family at 50%; the full suite runs the rest.
CASES = [pytest.param(family, sparsity, scope,
                      marks=[pytest.mark.slow] if family == ("vgg16", "imagenet") or (family[0] != "mlp" and sparsity != 0.5)
                      else [])
         for family in FAMILIES for sparsity in (0.3, 0.5, 0.7) for scope in ("global", "layer")
         if family != ("vgg16", "imagenet") or (sparsity, scope) in {(0.3, "layer"), (0.7, "global")}]


@pytest.mark.parametrize("family, sparsity, scope", CASES,
                         ids=lambda v: f"{v[0]}-{v[1]}" if isinstance(v, tuple) else None)
def test_compact_and_masked_networks_give_the_same_outputs(networks, family, sparsity, scope):
    masked = _pruned(networks[family], SHAPES[family[0]], "unit", sparsity, scope)
    small, spec = _assert_same_outputs(masked, SHAPES[family[0]])
    assert spec.coupled_kept == 0  # unit masks remove whole coupled groups
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())
    for name, layer in small.named_modules():  # what survived keeps its masks, which still cover it
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            assert layer.weight_mask.shape == layer.weight.shape, name


@pytest.mark.parametrize("family", [("mlp", None), ("vgg16", "small")], ids=["mlp", "vgg16-small"])
def test_input_pruning_narrows_the_first_layer_and_the_data(networks, family):
    masked = _pruned(networks[family], SHAPES[family[0]], "input", 0.6, "global")
    small, spec = _assert_same_outputs(masked, SHAPES[family[0]])
    first = next(m for m in small.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert spec.inputs_kept is not None and first.weight.shape[1] == len(spec.inputs_kept)
    total = 64 if family[0] == "mlp" else 3
    assert len(spec.inputs_kept) == round(0.4 * total)


def test_residual_streams_keep_the_union_and_count_it(networks):
    """Unit pruning removes whole streams, but masks edited by hand (or pruned weight by weight) can disagree:
    channels one conv of a residual stream drops and another still writes are kept, and counted."""
    masked = copy.deepcopy(networks[("resnet18", "small")])
    masks = MaskSet(masked, SHAPES["resnet18"])
    stream = next(group for group in masks.channel_groups() if len(group.producers) > 2)
    writer = list(stream.producers)[-1]
    dropped = stream.producers[writer][:5]  # that conv's units for five channels of the stream
    norm = masks.batchnorms[writer]
    for mask in (masks.layers[writer].weight_mask, norm.weight_mask, norm.bias_mask):
        mask[dropped] = False
    masks.refresh()
    masks.apply()
    small, spec = _assert_same_outputs(masked, SHAPES["resnet18"])
    assert spec.coupled_kept == 5
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in masked.parameters())


def test_mlp_units_without_inputs_are_folded_into_the_next_bias(networks):
    masked = copy.deepcopy(networks[("mlp", None)])
    MaskSet(masked)
    with torch.no_grad():
        masked.fc1.weight[:100] = 0  # 100 units emit relu(bias): constants, not zeros
    small, _ = _assert_same_outputs(masked, SHAPES["mlp"])
    assert small.fc1.weight.shape[0] == 200


@pytest.mark.slow
def test_compact_rebuilds_from_its_spec_and_expands_back(networks):
    family = ("resnet18", "small")
    masked = _pruned(networks[family], SHAPES["resnet18"], "unit", 0.5, "global")
    small, compaction = compact(masked, SHAPES["resnet18"], False)
    spec = ModelSpec(OmegaConf.to_container(_model_cfg(*family)), SHAPES["resnet18"], 10, compaction)
    rebuilt = spec.build(torch.device("cpu"))
    rebuilt.load_state_dict(small.state_dict())  # shapes come from the spec alone
    full = expand(small, spec.build_full(torch.device("cpu")), compaction).eval()
    x = torch.randn(2, *SHAPES["resnet18"])
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), small(x))
        torch.testing.assert_close(full(x), masked(x), atol=1e-5, rtol=1e-4)


def test_data_view_feeds_only_the_kept_inputs():
    from prunekit.config import DataConfig
    from prunekit.data import load_dataset

    dataset = load_dataset(OmegaConf.structured(DataConfig(name="digits")), torch.device("cpu"))
    full, view = DataView(dataset), DataView(dataset).narrowed([0, 5, 63], flattened=True)
    assert view.input_shape == (3,) and view.fraction_kept == 3 / 64
    (x, y), (xv, yv) = next(full.batches("val", 16, shuffle=False, augment=False)), \
        next(view.batches("val", 16, shuffle=False, augment=False))
    assert torch.equal(xv, x.flatten(1)[:, [0, 5, 63]]) and torch.equal(y, yv)


def test_cycle_restarts_the_cosine_at_every_pruning_step():
    cfg = OmegaConf.create({"lr_schedule": "cycle"})
    restarts = (0.25, 0.5, 0.75)
    assert lr_factor(cfg, 0.0, restarts) == 1.0
    assert lr_factor(cfg, 0.25, restarts) == 1.0 and lr_factor(cfg, 0.5, restarts) == 1.0
    assert lr_factor(cfg, 0.125, restarts) == pytest.approx(0.5)
    assert lr_factor(cfg, 0.2499, restarts) < 0.01
    assert lr_factor(OmegaConf.create({"lr_schedule": "cosine"}), 0.5, restarts) == pytest.approx(0.5)
