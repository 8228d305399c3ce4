"""method=crespr: clusters that partition the features, modules no weight crosses (or exactly the allowed share),
the structure holding through training, per-module floors, the Hessian diagonal against the exact one, the
modules' Q, and bad input."""
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from prunekit.pruning.methods.crespr import CresprConfig
from prunekit.explain.graph import SurvivingNetwork
from prunekit.explain.modularity import block_diagonal_layers, partition_modularity, weighted_graph
from prunekit.pruning.clusters import feature_clusters
from prunekit.pruning.hessian import hessian_diagonal
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.modules import CROSS
from tests.conftest import read_summary

SHAPE = (1, 6, 8)  # 48 input features as a small image


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(), nn.Linear(12, 3))


def _method(model, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(CresprConfig), {"name": "crespr", "cluster_by": "spatial", **overrides})
    masks = MaskSet(model)
    data = SimpleNamespace(dataset=SimpleNamespace(train=SimpleNamespace(x=torch.randn(64, *SHAPE)), input_shape=SHAPE))
    return get_method_class("crespr")(cfg, model, masks, data, 0), masks


def _crossing(method, masks) -> int:
    modules = method.modules()
    return sum(int((layer.weight_mask & (modules[name] == CROSS)).sum()) for name, layer in masks.layers.items())


@pytest.mark.parametrize("how", ["correlation", "spatial", "random"])
@pytest.mark.parametrize("k", [1, 3, 4])
def test_clusters_are_a_partition_of_the_features(how, k):
    x = torch.randn(300, 4).repeat(1, 12) + 0.3 * torch.randn(300, 48)  # four groups of correlated features
    labels = feature_clusters(how, k, x.view(300, *SHAPE), SHAPE, seed=0)
    assert labels.shape == (48,) and set(labels.tolist()) == set(range(k))
    assert torch.equal(labels, feature_clusters(how, k, x.view(300, *SHAPE), SHAPE, seed=0))  # same seed, same clusters
    if how == "correlation" and k == 4:  # features that vary together are grouped together
        assert all(len(set(labels[group::4].tolist())) == 1 for group in range(4))


def test_spatial_clusters_are_contiguous_tiles():
    labels = feature_clusters("spatial", 4, None, SHAPE, 0).view(6, 8)
    assert labels[:3, :4].unique().tolist() == [0] and labels[:3, 4:].unique().tolist() == [1]
    assert labels[3:, :4].unique().tolist() == [2] and labels[3:, 4:].unique().tolist() == [3]


def test_no_weight_crosses_modules_when_cross_is_zero_and_the_count_is_exact():
    method, masks = _method(_mlp(), clusters=3)
    method.start()
    assert _crossing(method, masks) == 0
    total = sum(m.weight_mask.numel() for m in masks.layers.values())
    method.prune(0.9)
    assert sum(int(m.weight_mask.sum()) for m in masks.layers.values()) == round(0.1 * total)
    assert _crossing(method, masks) == 0
    modules = method.modules()  # the first layer: cluster c feeds module c; the classifier reads every module
    clusters = feature_clusters("spatial", 3, None, SHAPE, 0)
    assert int((modules["1"] != CROSS).sum()) == sum(8 * int((clusters == c).sum()) for c in range(3))
    assert bool((modules["5"] != CROSS).all())


def test_exactly_the_allowed_share_crosses_when_crossing_weights_are_the_strongest():
    method, masks = _method(_mlp(), clusters=2, cross=0.25)
    with torch.no_grad():  # make every crossing weight outrank every weight inside a module
        for name, layer in masks.layers.items():
            strength = torch.where(method.modules()[name] == CROSS, 10.0, 0.1)
            layer.weight.copy_(strength * (1 + torch.rand_like(layer.weight)))
    method.start()
    method.prune(0.8)
    kept = sum(int(m.weight_mask.sum()) for m in masks.layers.values())
    assert kept == round(0.2 * sum(m.weight_mask.numel() for m in masks.layers.values()))
    assert _crossing(method, masks) == int(0.25 * kept)


def test_every_module_of_every_layer_keeps_its_floor_at_extreme_sparsity():
    method, masks = _method(_mlp(), clusters=4, min_keep=2)
    method.start()
    method.prune(0.999)
    for name, layer in masks.layers.items():
        modules = method.modules()[name]
        assert all(int((layer.weight_mask & (modules == c)).sum()) >= 2 for c in range(4)), name


def test_starting_again_changes_nothing():
    method, masks = _method(_mlp(), clusters=2, cross=0.1)
    method.start()
    method.prune(0.7)
    before = {name: layer.weight_mask.clone() for name, layer in masks.layers.items()}
    method.start()  # what a resumed run does
    assert all(torch.equal(before[name], layer.weight_mask) for name, layer in masks.layers.items())


def test_a_cnn_has_block_diagonal_convolutions_after_a_first_one_reading_every_channel():
    from prunekit.models import build_model

    model = build_model(OmegaConf.create({"name": "cnn", "blocks": [[8], [8]], "hidden": 8}), (3, 8, 8), 3)
    method, masks = _method(model, clusters=2)
    method.start()
    first, second = masks.layers["features.0"].weight_mask, masks.layers["features.4"].weight_mask
    assert bool(first.all())
    assert bool(second[:4, :4].all() and second[4:, 4:].all())
    assert not bool(second[:4, 4:].any() or second[4:, :4].any())
    fc = masks.layers["fc"].weight_mask  # reads 8 channels of 2x2 positions, channel-major
    assert not bool(fc[:4, 16:].any()) and bool(fc[:4, :16].all())


def test_the_hutchinson_diagonal_matches_the_exact_hessian_diagonal_and_fisher_the_mean_squared_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 3, (16,))
    layers = {"0": model[0], "2": model[2]}
    before = [p.detach().clone() for p in model.parameters()]
    estimate = hessian_diagonal(model, layers, [(x, y)], "hutchinson", torch.Generator().manual_seed(0), probes=1500)
    fisher = hessian_diagonal(model, layers, [(x, y)], "fisher", torch.Generator())
    for name, layer in layers.items():
        weight = layer.weight.detach()

        def loss(flat, layer=layer, weight=weight):
            out = model[2](torch.tanh(x @ flat.view_as(weight).T + model[0].bias)) if layer is model[0] else \
                F.linear(torch.tanh(model[0](x)), flat.view_as(weight), model[2].bias)
            return F.cross_entropy(out, y)

        exact = torch.autograd.functional.hessian(loss, weight.flatten()).diagonal().view_as(weight)
        assert (estimate[name] - exact).abs().max() < 0.15 * exact.abs().max()
        squares = torch.zeros_like(weight)
        for i in range(len(x)):
            (g,) = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), layer.weight)
            squares += g.square() / len(x)
        torch.testing.assert_close(fisher[name], squares)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("blocks", [2, 4])
def test_q_of_the_true_partition_of_a_modular_network_is_one_minus_one_over_k(blocks):
    widths = [16, 12, 8]
    net = SurvivingNetwork(block_diagonal_layers(widths, blocks, np.random.default_rng(0)),
                           [np.ones(w, bool) for w in widths])
    labels = [np.arange(w) * blocks // w for w in widths]
    graph = weighted_graph(net)
    truth = [{node for node in graph if labels[node[0]][node[1]] == b} for b in range(blocks)]
    assert partition_modularity(net, labels) == pytest.approx(1 - 1 / blocks, abs=1e-3)
    assert partition_modularity(net, labels) == pytest.approx(nx.community.modularity(graph, truth, weight="weight"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.slow
def test_a_run_keeps_its_modules_through_training_and_reports_them(cli, tmp_path, optimizer):
    code, _, err = cli("train", "method=crespr", "method.clusters=2", "method.sparsity=0.9", "dataset=synthetic",
                       "data.shape=[1,4,4]", "model.hidden=[16,8]", "train.epochs=1", "prune.epochs=2",
                       f"prune.optimizer={optimizer}", "prune.weight_decay=0.01", "finetune.epochs=1",
                       f"finetune.optimizer={optimizer}", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "checkpoints" / "pruned.pt", weights_only=True)["model"]
    hidden = [torch.arange(16) * 2 // 16, torch.arange(8) * 2 // 8]
    assert not state["fc2.weight"][hidden[1][:, None] != hidden[0][None, :]].any()
    summary = read_summary(tmp_path / "run")
    assert summary["inside_fraction"] == 1.0 and summary["density"] == pytest.approx(0.1, abs=2e-3)
    assert -0.5 <= summary["module_q"] <= 1.0 and summary["modularity_q"] is not None
    assert sum(summary["module_features"]) == 16
    assert {"modules_inputs.png", "modules_classes.png", "modules_weights.png"} <= {
        p.name for p in (tmp_path / "run" / "figures").iterdir()}


@pytest.mark.parametrize("override,message", [
    ("method.clusters=0", "method.clusters=0"),
    ("method.clusters=9", "method.clusters=9 exceeds the narrowest hidden layer (8 units)"),
    ("method.cross=1.5", "method.cross=1.5"),
    ("method.cross=-0.1", "method.cross=-0.1"),
    ("method.cluster_by=pixels", "method.cluster_by='pixels'"),
    ("method.criterion=taylor", "method.criterion='taylor'"),
    ("method.scope=layer", "method.scope"),
])
def test_bad_settings_are_one_line_and_exit_2(cli, tmp_path, override, message):
    code, _, err = cli("train", "method=crespr", "model.hidden=[16,8]", override, "hydra.run.dir=run")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_hessian_script_measures_the_off_block_mass_of_the_exact_hessian():
    from tests.conftest import load_script

    script = load_script("crespr_hessian")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[2].weight[0, 3] = 0.0  # a pruned weight: outside every block and out of the mass
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    layers = {"0": model[0], "2": model[2], "4": model[4]}
    from prunekit.pruning.modules import weight_modules

    blocks = weight_modules(layers, 2, torch.tensor([0, 0, 1, 1]))
    flat = torch.cat([layer.weight.detach().flatten() for layer in layers.values()])
    sizes = [layer.weight.numel() for layer in layers.values()]

    def loss(vector):
        w = [part.view_as(layer.weight) for part, layer in zip(vector.split(sizes), layers.values())]
        hidden = torch.tanh(F.linear(torch.tanh(F.linear(x, w[0], model[0].bias)), w[1], model[2].bias))
        return F.cross_entropy(F.linear(hidden, w[2], model[4].bias), y)

    hessian = torch.autograd.functional.hessian(loss, flat)
    alive, label = flat != 0, torch.cat([b.flatten() for b in blocks.values()])
    whole = hessian[alive][:, alive].square().sum()
    inside = sum(hessian[(label == b) & alive][:, (label == b) & alive].square().sum() for b in (0, 1))
    estimate = script.off_block_mass(model, blocks, x, y, probes=1500)
    assert estimate == pytest.approx(float(1 - inside / whole), abs=0.03)
    one_block = {name: torch.zeros_like(b) for name, b in blocks.items()}
    assert script.off_block_mass(model, one_block, x, y, probes=2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("preset", ["crespr_cifar10"])  # the others' baselines have presets (tests/test_presets.py)
def test_the_presets_compose_for_the_method_and_its_baseline(preset):
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas
    from prunekit.validation import validate

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        for overrides in ([], ["method=magnitude"]):
            cfg = compose("train", overrides=[f"experiment={preset}", *overrides])
            validate(cfg)
            assert cfg.paper.table and cfg.method.sparsity >= 0.98
