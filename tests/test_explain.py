"""Interpretability of a pruned MLP: the surviving network, feature importance, symmetry, pathways,
and the files explain_mlp writes, on hand-built networks whose answers are known."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import UserError
from prunekit.explain import explain_mlp
from prunekit.explain.graph import surviving_network
from prunekit.explain.importance import feature_importance
from prunekit.explain.layering import unit_positions
from prunekit.explain.pathways import strongest_edges
from prunekit.explain.symmetry import interchangeable_groups, mirror_score

FIGURES = ("importance.png", "symmetry.png", "pathways.png")


def mlp(*sizes: int) -> nn.Sequential:
    """An MLP with every weight zero, to be wired by hand."""
    layers: list[nn.Module] = [nn.Flatten()]
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for layer in linears(model):
            layer.weight.zero_()
    return model


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def wire(model: nn.Module, connections: dict[int, dict[tuple[int, int], float]]) -> nn.Module:
    """Set weights: {layer: {(target unit, source unit): weight}}."""
    layers = linears(model)
    with torch.no_grad():
        for layer, weights in connections.items():
            for (target, source), value in weights.items():
                layers[layer].weight[target, source] = value
    return model


@pytest.fixture
def hand_built() -> nn.Module:
    """16-6-4-3 on a 4x4 image. Alive paths: pixels 0 and 1 -> h0, pixel 5 -> h1; h0, h1 -> g0 -> c0, c1.

    Dead on purpose: h2 has no input (its weight to g0 must not count), h3 (fed by pixel 6) has no
    output, g1 has no input (its weight to c2 must not count), g2 (fed by h0) has no output.
    """
    return wire(mlp(16, 6, 4, 3), {
        0: {(0, 0): 2.0, (0, 1): -1.0, (1, 5): 0.5, (3, 6): 3.0},
        1: {(0, 0): 1.5, (0, 1): -2.0, (0, 2): 4.0, (2, 0): 0.5},
        2: {(0, 0): 1.0, (1, 0): -3.0, (2, 1): 2.0},
    })


def test_dead_units_and_their_weights_are_removed(hand_built):
    net = surviving_network(hand_built, 16)
    assert net.alive_counts == [3, 2, 1, 2]
    assert np.flatnonzero(net.alive[0]).tolist() == [0, 1, 5]
    assert net.weights[1][0, 2] == 0  # h2 -> g0: h2 has no input
    assert net.weights[2][2, 1] == 0  # g1 -> c2: g1 has no input
    assert net.weights[0][3, 6] == 0  # pixel 6 -> h3: h3 has no output
    assert net.weight_count == 3 + 2 + 2


def test_importance_counts_alive_connections_and_sums_path_products(hand_built):
    importance = feature_importance(surviving_network(hand_built, 16))
    assert importance.inputs_used == 3
    assert importance.connections[[0, 1, 5, 6]].tolist() == [1, 1, 1, 0]
    # |w| products along pixel -> h -> g0 -> (c0 or c1), summed over both classes (|1| + |-3| = 4).
    expected = np.zeros(16)
    expected[[0, 1, 5]] = [2 * 1.5 * 4, 1 * 1.5 * 4, 0.5 * 2 * 4]
    np.testing.assert_allclose(importance.path_weight, expected)


@pytest.mark.slow
def test_explain_mlp_reports_and_writes_every_file(hand_built, tmp_path):
    out = tmp_path / "figures" / "nested"
    summary = explain_mlp(hand_built, (1, 4, 4), out, class_names=["zero", "one", "two"])
    assert summary["inputs_used"] == 3
    assert summary["alive_units"] == [3, 2, 1, 2]
    assert summary["symmetry"]["groups"] == [[0, 1]]
    assert 0.0 <= summary["symmetry"]["left_right"] <= 1.0
    for name in (*FIGURES, "importance.csv"):
        assert (out / name).stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "importance.csv"])  # no temporaries
    rows = list(csv.DictReader((out / "importance.csv").open()))
    assert len(rows) == 16
    assert rows[5] == {"feature": "5", "row": "1", "col": "1", "connections": "1", "path_weight": "4.0"}


def test_left_right_symmetric_wiring_scores_high():
    model = mlp(16, 5, 3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first = torch.randn(5, 1, 4, 4, generator=generator) * (torch.rand(5, 1, 4, 4, generator=generator) < 0.5)
        linears(model)[0].weight.copy_((first + first.flip(-1)).reshape(5, 16))  # column c mirrors 3 - c
        linears(model)[1].weight.normal_(generator=generator)
    grid = feature_importance(surviving_network(model, 16)).path_weight.reshape(4, 4)
    assert mirror_score(grid, axis=1) >= 0.9


def test_importance_in_the_left_half_scores_low():
    left_pixels = [row * 4 + col for row in range(4) for col in (0, 1)]
    model = wire(mlp(16, 4, 3), {0: {(k % 4, f): 1.0 + k for k, f in enumerate(left_pixels)},
                                 1: {(c, h): 1.0 for c in range(3) for h in range(4)}})
    grid = feature_importance(surviving_network(model, 16)).path_weight.reshape(4, 4)
    assert mirror_score(grid, axis=1) <= 0.3
    assert mirror_score(np.zeros((4, 4)), axis=1) is None  # nothing survives: no score


def test_features_wired_to_the_same_hidden_units_form_a_group():
    model = wire(mlp(16, 4, 2), {0: {(0, 3): 1.0, (2, 3): -1.0, (0, 9): 0.5, (2, 9): 2.0, (0, 12): 1.0,
                                     (1, 7): 1.0, (1, 8): 1.0, (1, 10): 1.0},
                                 1: {(0, 0): 1.0, (1, 1): 1.0, (1, 2): 1.0}})
    # 3 and 9 reach exactly {h0, h2}; 7, 8 and 10 reach {h1}; 12 reaches only h0: a group of one.
    assert interchangeable_groups(surviving_network(model, 16)) == [[7, 8, 10], [3, 9]]


def test_a_network_without_hidden_layers_groups_features_by_class():
    net = surviving_network(wire(mlp(4, 2), {0: {(0, 0): 1.0, (0, 3): -2.0, (1, 1): 1.0}}), 4)
    assert net.alive_counts == [3, 2]
    assert interchangeable_groups(net) == [[0, 3]]
    assert [np.isnan(p).sum() for p in unit_positions(net)] == [1, 0]


def test_hidden_units_follow_the_barycentre_of_their_neighbours():
    # h0 joins the last pixel to the last class, h1 the first pixel to the first class: h1 goes on top.
    model = wire(mlp(4, 2, 2), {0: {(0, 3): 1.0, (1, 0): 1.0}, 1: {(1, 0): 1.0, (0, 1): 1.0}})
    hidden = unit_positions(surviving_network(model, 4))[1]
    assert hidden[1] < hidden[0]


def test_strongest_edges_keeps_the_largest_weakest_first():
    magnitude = np.array([0.5, 3.0, 0.1, 2.0, 1.0])
    assert strongest_edges(magnitude, 3).tolist() == [4, 3, 1]
    assert strongest_edges(magnitude, 10).tolist() == [2, 0, 4, 3, 1]


def test_tabular_input_has_no_mirror_scores(tmp_path):
    model = wire(mlp(6, 3, 2), {0: {(0, 0): 1.0, (0, 4): 2.0, (1, 2): -1.0}, 1: {(0, 0): 1.0, (1, 1): 1.0}})
    summary = explain_mlp(model, (6,), tmp_path)
    assert summary["symmetry"] == {"left_right": None, "up_down": None, "groups": [[0, 4]]}
    assert summary["alive_units"] == [3, 2, 2]
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "importance.csv").open()))
    assert (rows[4]["row"], rows[4]["col"], rows[4]["path_weight"]) == ("", "", "2.0")


def sparse_lenet(seed: int = 0) -> nn.Module:
    """LeNet-300-100 with 400 random non-zero weights (0.15 %), as 250, 100 and 50 weights among a few
    units per layer, so that, as after pruning and unlike uniform noise, most lie on input-to-class paths."""
    rng = np.random.default_rng(seed)
    model = mlp(784, 300, 100, 10)
    units = [rng.choice(784, 150, replace=False), rng.choice(300, 40, replace=False),
             rng.choice(100, 20, replace=False), np.arange(10)]
    with torch.no_grad():
        for k, (layer, count) in enumerate(zip(linears(model), (250, 100, 50))):
            pairs = rng.choice(units[k + 1].size * units[k].size, count, replace=False)
            target, source = units[k + 1][pairs // units[k].size], units[k][pairs % units[k].size]
            layer.weight[target, source] = torch.from_numpy(rng.normal(size=count)).float()
    return model


@pytest.mark.slow
def test_lenet_at_extreme_sparsity_is_explained(tmp_path):
    summary = explain_mlp(sparse_lenet(), (1, 28, 28), tmp_path, class_names=[f"digit {i}" for i in range(10)])
    assert 0 < summary["inputs_used"] <= 150
    assert summary["alive_units"][-1] <= 10
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.slow
def test_a_barely_pruned_network_is_drawn_with_its_strongest_edges_only(tmp_path, monkeypatch):
    from prunekit.explain import pathways

    drawn = []  # the edges handed to matplotlib: drawing all ~53,000 would take minutes and show nothing

    class Recording(pathways.LineCollection):
        def __init__(self, segments, **kwargs):
            drawn.append(len(segments))
            super().__init__(segments, **kwargs)

    monkeypatch.setattr(pathways, "LineCollection", Recording)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in linears(model):
            layer.weight.mul_(torch.rand_like(layer.weight) < 0.2)  # about 53,000 weights survive
    summary = explain_mlp(model, (1, 28, 28), tmp_path)
    assert drawn == [pathways.MAX_DRAWN_EDGES]
    assert summary["inputs_used"] == 784
    assert (tmp_path / "pathways.png").stat().st_size > 0
    magnitudes = np.array([0.5, 3.0, 1.0, 2.0])
    assert list(pathways.strongest_edges(magnitudes, 2)) == [3, 1]  # the two largest, weakest first


def test_mismatches_are_user_errors(hand_built, tmp_path):
    with pytest.raises(UserError, match="class names"):
        explain_mlp(hand_built, (1, 4, 4), tmp_path, class_names=["a", "b"])
    with pytest.raises(UserError, match="16"):
        explain_mlp(hand_built, (1, 8, 8), tmp_path)
    with pytest.raises(UserError, match="no nn.Linear"):
        explain_mlp(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 4, 4), tmp_path)


@pytest.mark.parametrize("columns, symmetric", [((1, 6), True), ((1, 2), False)])
def test_a_network_trained_on_mirrored_signal_has_a_mirrored_importance_map(columns, symmetric):
    """The class is the sign of a sum over 8 pixels: in columns 1 and 6 (left-right mirrors) or in columns
    1 and 2 (left half only). Trained, then pruned to 8 input pixels, the surviving network's importance map
    must be symmetric in the first case and not in the second."""
    from omegaconf import OmegaConf

    from prunekit.config import MethodConfig
    from prunekit.pruning.masks import MaskSet
    from prunekit.pruning.methods import get_method_class

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 1, 8, 8, generator=generator)
    y = (x[:, 0, 2:6][:, :, list(columns)].sum((1, 2)) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    masks = MaskSet(model)
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig), {"name": "magnitude", "granularity": "input"})
    get_method_class("magnitude")(cfg, model, masks, None, 0).prune(1 - 8 / 64)
    grid = feature_importance(surviving_network(model, 64)).path_weight.reshape(8, 8)
    score = mirror_score(grid, axis=1)
    assert score >= 0.8 if symmetric else score <= 0.2, score
