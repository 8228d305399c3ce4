"""Metrics: parameter counts (total, non-zero, effective), density and FLOPs, with counts worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig
from prunekit.models.adapt import ConvNetConfig
from prunekit.models.cnn import CNNConfig
from prunekit.models.mlp import MLPConfig
from prunekit.layers import is_mlp, prunable_layers
from prunekit.metrics import (
    alive_weights, collapse, flops_per_layer, layer_table, measure, summary_metrics,
)
from prunekit.models import build_model
from prunekit.models.mlp import MLP
from prunekit.pruning.compaction import compact
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class


@pytest.fixture
def tiny_mlp() -> MLP:
    """4 -> 3 -> 2 -> 2 with no zero entries: 15 + 8 + 6 = 29 parameters, 22 of them weights."""
    torch.manual_seed(0)
    net = MLP(4, [3, 2], 2)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.rand_like(p) + 0.1)  # never exactly zero; signs do not matter to the counts
    return net


def lenet() -> MLP:
    return build_model(OmegaConf.structured(MLPConfig(name="mlp")), (1, 28, 28), 10)


def test_dense_mlp_has_every_parameter_effective():
    s = summary_metrics(lenet(), (1, 28, 28))
    assert s["params_total"] == s["params_nonzero"] == s["params_effective"] == 266_610
    assert s["density"] == 1.0


def test_neuron_without_inputs_loses_its_bias_and_outgoing_weights(tiny_mlp):
    with torch.no_grad():
        tiny_mlp.fc1.weight[0] = 0  # hidden unit 0 of fc1: 4 incoming weights gone
    s = summary_metrics(tiny_mlp, (4,))
    assert (s["params_total"], s["params_nonzero"]) == (29, 25)
    # 29 - 4 zeroed weights - its bias - its 2 outgoing weights in fc2
    assert s["params_effective"] == 22
    alive = alive_weights(tiny_mlp, (4,))
    assert not alive["fc2"][:, 0].any() and alive["fc2"][:, 1:].all()
    rows = {row["layer"]: row for row in layer_table(tiny_mlp, (4,))}
    assert [(rows[n]["params"], rows[n]["nonzero"], rows[n]["effective"]) for n in ("fc1", "fc2", "fc3")] == [
        (15, 11, 10),  # 8 weights + 2 biases of the live units
        (8, 8, 6),  # 4 weights from the live units + 2 biases
        (6, 6, 6),
    ]
    assert rows["fc1"]["shape"] == "3x4" and rows["fc1"]["type"] == "Linear"


def test_neuron_without_outgoing_weights_kills_its_incoming_weights(tiny_mlp):
    with torch.no_grad():
        tiny_mlp.fc2.weight[:, 1] = 0  # hidden unit 1 of fc1 no longer feeds anything
    s = summary_metrics(tiny_mlp, (4,))
    assert (s["params_nonzero"], s["params_effective"]) == (27, 22)  # 29 - 2 zeroed - 4 incoming - 1 bias
    assert not alive_weights(tiny_mlp, (4,))["fc1"][1].any()


def test_deadness_cascades_through_layers(tiny_mlp):
    with torch.no_grad():
        tiny_mlp.fc3.weight[:, 0] = 0  # unit 0 of fc2 is cut from the outputs ...
        tiny_mlp.fc2.weight[1, 2] = 0  # ... and unit 2 of fc1 now feeds only that unit
    s = summary_metrics(tiny_mlp, (4,))
    # dead: fc3[:, 0] (2, zero), fc2 row 0 (3) + bias, fc2[1, 2] (zero), fc1 row 2 (4) + bias
    assert s["params_nonzero"] == 26 and s["params_effective"] == 29 - 2 - 4 - 1 - 5
    assert s["density"] == pytest.approx(19 / 22)


def test_conv_filter_feeding_a_linear_layer_after_flatten():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].weight[0] = 0
    alive = alive_weights(net, (1, 8, 8))
    assert not alive["3"][:, :36].any() and alive["3"][:, 36:].all()  # columns of channel 0 are dead
    s = summary_metrics(net, (1, 8, 8))
    assert s["params_total"] == 20 + 219 and s["params_effective"] == 10 + 111  # filter 1 + bias; 3x36 + 3


def conv_net(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(OmegaConf.structured(ConvNetConfig(name=name)), (1, 8, 8), 10)


def test_pruned_vgg_filter_takes_its_bias_batchnorm_and_outgoing_weights_along():
    net, shape = conv_net("vgg16"), (1, 8, 8)
    before = summary_metrics(net, shape)
    conv, next_conv = net.features[0], net.features[3]
    lost = int(torch.count_nonzero(conv.weight[5])) + 1 + 2 + int(torch.count_nonzero(next_conv.weight[:, 5]))
    with torch.no_grad():
        conv.weight[5] = 0
    after = summary_metrics(net, shape)
    assert after["params_effective"] == before["params_effective"] - lost
    assert after["params_total"] == before["params_total"]
    assert after["collapsed_layers"] == [] and after["classes_without_path"] == []
    assert all(math.isfinite(v) for v in after.values() if not isinstance(v, list))
    assert not alive_weights(net, shape)["features.3"][:, 5].any()


def test_resnet_channel_pruned_before_a_residual_sum_stays_alive_through_the_skip():
    net, shape = conv_net("resnet18"), (1, 8, 8)
    block = net.layer1[0]
    with torch.no_grad():
        block.conv2.weight[7] = 0  # channel 7 of the sum still carries the identity path
    alive = alive_weights(net, shape)
    assert alive["layer1.1.conv1"][:, 7].all()
    assert alive["layer1.0.conv1"].all()  # conv1's outputs still reach the output through other filters
    rows = {row["layer"]: row for row in layer_table(net, shape)}
    assert rows["layer1.0.conv2"]["effective"] == 64 * 64 * 9 - 64 * 9
    s = summary_metrics(net, shape)
    assert s["params_effective"] == s["params_total"] - 64 * 9 - 2  # the filter and its BatchNorm entries


def test_density_counts_only_prunable_weights():
    net = lenet()
    with torch.no_grad():
        net.fc1.weight.view(-1)[:1000] = 0
        net.fc3.bias.zero_()  # biases do not enter the density
    s = summary_metrics(net, (1, 28, 28))
    assert s["density"] == pytest.approx((266_200 - 1000) / 266_200)
    assert s["params_nonzero"] == 266_610 - 1010


def test_linear_flops_count_a_multiply_add_as_two():
    assert flops_per_layer(nn.Sequential(nn.Linear(784, 300)), (784,)) == {"0": 2 * 784 * 300}
    assert flops_per_layer(lenet(), (1, 28, 28)) == {"fc1": 470_400, "fc2": 60_000, "fc3": 2_000}


def test_effective_flops_count_the_non_zero_weights_of_live_units():
    net = lenet()
    with torch.no_grad():
        net.fc1.weight[:, ::2] = 0  # half of fc1's weights; every unit still alive
    rows = {row["layer"]: row for row in layer_table(net, (1, 28, 28))}
    assert rows["fc1"]["density"] == 0.5 and rows["fc1"]["flops_effective"] == 470_400 / 2
    s = summary_metrics(net, (1, 28, 28))
    assert (s["flops_dense"], s["flops_effective"]) == (532_400, 532_400 - 235_200)


def test_effective_flops_skip_the_non_zero_weights_of_dead_units(tiny_mlp):
    with torch.no_grad():
        tiny_mlp.fc1.weight[0] = 0  # hidden unit 0 of fc1 dead; its 2 outgoing weights in fc2 stay non-zero
    rows = {row["layer"]: row for row in layer_table(tiny_mlp, (4,))}
    # 2 FLOPs per alive weight: fc1 8 of 12, fc2 4 of 6 (not the 6 non-zero ones), fc3 4 of 4
    assert [rows[n]["flops_effective"] for n in ("fc1", "fc2", "fc3")] == [16, 8, 8]
    assert summary_metrics(tiny_mlp, (4,))["flops_effective"] == 32
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].weight[0] = 0  # filter 0 dead: the 3 x 36 classifier weights reading it cost nothing
    # the 9 weights of filter 1 at each of the 6 x 6 output positions, and 3 x 36 weights once
    assert summary_metrics(net, (1, 8, 8))["flops_effective"] == 2 * 9 * 36 + 2 * 3 * 36


def _magnitude_pruned(model: nn.Module, shape: tuple[int, ...], granularity: str, sparsity: float) -> nn.Module:
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig),
                          {"name": "magnitude", "granularity": granularity, "scope": "layer"})
    get_method_class("magnitude")(cfg, model, MaskSet(model, shape), None, 0).prune(sparsity)
    return model.eval()


@pytest.mark.parametrize("cfg, shape", [
    (MLPConfig(name="mlp", hidden=[40, 20]), (1, 8, 8)),
    (CNNConfig(name="cnn", blocks=[[8], [16]], hidden=12), (3, 8, 8)),  # convolutions with BatchNorm
], ids=["mlp", "cnn"])
def test_after_unit_pruning_effective_flops_are_the_compact_networks(cfg, shape):
    torch.manual_seed(0)
    masked = _magnitude_pruned(build_model(OmegaConf.structured(cfg), shape, 10), shape, "unit", 0.5)
    small, _ = compact(masked, shape, is_mlp(masked))
    s = summary_metrics(masked, shape)
    assert s["params_effective"] == sum(p.numel() for p in small.parameters())
    assert s["flops_effective"] == sum(flops_per_layer(small, shape).values()) < s["flops_dense"]


def test_after_weight_pruning_effective_flops_are_at_most_the_non_zero_share():
    torch.manual_seed(0)
    net = _magnitude_pruned(build_model(OmegaConf.structured(MLPConfig(name="mlp", hidden=[40, 20])), (1, 8, 8), 10),
                            (1, 8, 8), "weight", 0.97)
    summary, rows = measure(net, (1, 8, 8))
    non_zero_share = sum(row["flops"] * row["density"] for row in rows)
    assert summary["collapsed_layers"] == [] and any(row["effective"] < row["nonzero"] for row in rows)
    assert summary["flops_effective"] < non_zero_share  # the non-zero weights of dead units are not counted


def test_metrics_leave_the_model_untouched():
    net = conv_net("resnet18").train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    summary_metrics(net, (1, 8, 8))
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert [name for name, _ in prunable_layers(net)][:2] == ["conv1", "layer1.0.conv1"]


def test_collapse_names_the_layers_without_an_alive_weight_and_the_classes_without_a_path(tiny_mlp):
    assert collapse(tiny_mlp, (4,)) == {"collapsed_layers": [], "classes_without_path": []}
    with torch.no_grad():
        tiny_mlp.fc3.weight[1] = 0  # class 1 loses every incoming weight; class 0 keeps its path
    assert collapse(tiny_mlp, (4,)) == {"collapsed_layers": [], "classes_without_path": [1]}
    with torch.no_grad():
        tiny_mlp.fc2.weight.zero_()  # the whole middle layer: nothing reaches any class any more
    assert collapse(tiny_mlp, (4,)) == {"collapsed_layers": ["fc1", "fc2", "fc3"], "classes_without_path": [0, 1]}
    summary, _ = measure(tiny_mlp, (4,))  # the summary carries the same two entries, from its one pass
    assert (summary["collapsed_layers"], summary["classes_without_path"]) == (["fc1", "fc2", "fc3"], [0, 1])
    assert summary["params_effective"] == 0  # no alive weight, unit or bias anywhere
