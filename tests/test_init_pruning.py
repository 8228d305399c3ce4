"""Pruning at initialisation (snip, grasp, synflow): each score against a hand computation on a tiny network,
what scoring leaves alone, SynFlow's rounds, N:M through the allocation, and a run that prunes before training."""
import copy
import types

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from prunekit.errors import UserError
from prunekit.pruning.criteria.grasp import GraspConfig
from prunekit.pruning.criteria.snip import SnipConfig
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.methods.synflow import SynFlowConfig, synaptic_flow
from tests.conftest import read_summary, toy_images

SCHEMAS = {"snip": SnipConfig, "grasp": GraspConfig, "synflow": SynFlowConfig}


def _net(*widths, bias=True):
    """Flatten, then Linear layers with ReLUs between them; weights of both signs."""
    torch.manual_seed(0)
    layers = [nn.Flatten()]
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _method(name, model, data, **overrides):
    """The method ``name`` on ``model``; ``overrides`` that its config does not have are left out."""
    schema = OmegaConf.structured(SCHEMAS[name])
    cfg = OmegaConf.merge(schema, {"name": name, **{k: v for k, v in overrides.items() if k in schema}})
    masks = MaskSet(model, tuple(data.input_shape))
    return get_method_class(name)(cfg, model, masks, data, 0), masks


def _reference(method, data):
    return next(data.samples("train", method.context.reference, 1000))


def test_snip_is_the_magnitude_of_gradient_times_weight():
    model, data = _net(4, 3, 3), toy_images(n_per_class=4, classes=3, shape=(1, 2, 2))
    method, _ = _method("snip", model, data, samples_per_class=1)  # 3 samples, one of each class
    x, y = _reference(method, data)
    copied = copy.deepcopy(model)
    loss = F.cross_entropy(copied(x), y, reduction="sum")
    grads = torch.autograd.grad(loss, [copied[1].weight, copied[3].weight])
    # the last layer's gradient from its formula: sum over samples of (softmax - one-hot) times the hidden output
    hidden = torch.relu(x.flatten(1) @ model[1].weight.T + model[1].bias).detach()
    explicit = (torch.softmax(copied(x), 1) - F.one_hot(y, 3)).detach().T @ hidden
    torch.testing.assert_close(grads[1], explicit)
    scores = method.scores()
    torch.testing.assert_close(scores["1"], (grads[0] * model[1].weight).abs().detach())
    torch.testing.assert_close(scores["3"], (explicit * model[3].weight).abs().detach())


def test_grasp_is_weight_times_hessian_gradient_product_at_the_temperature():
    model, data = _net(4, 3, 3), toy_images(n_per_class=4, classes=3, shape=(1, 2, 2))
    method, _ = _method("grasp", model, data, samples_per_class=1, temperature=5.0, score_batch_size=2)
    x, y = _reference(method, data)
    names = ["1.weight", "3.weight"]
    params = tuple(model.get_parameter(n).detach() for n in names)

    def loss(*weights):
        return F.cross_entropy(functional_call(model, dict(zip(names, weights)), (x,)) / 5.0, y, reduction="sum")

    g = torch.autograd.functional.jacobian(loss, params)
    _, hg = torch.autograd.functional.hvp(loss, params, g)
    scores = method.scores()
    for layer, weight, product in zip(["1", "3"], params, hg):
        torch.testing.assert_close(scores[layer], weight * product, rtol=1e-4, atol=1e-9)
    method.prune(0.5)  # the authors remove the highest -w * Hg: the highest w * Hg are kept
    flat = torch.cat([s.flatten() for s in scores.values()])
    kept = torch.cat([layer.weight_mask.flatten() for layer in method.masks.layers.values()])
    assert kept.sum() == 10 and flat[kept].min() >= flat[~kept].max()


def test_one_synflow_round_is_the_path_flow_through_each_weight():
    model = _net(3, 4, 2)
    masks = MaskSet(model, (3,))
    with torch.no_grad():
        model[1].weight[0, 0] = 0.0
        masks.layers["1"].weight_mask[0, 0] = False
    w1, b1, w2 = (t.detach().abs() for t in (model[1].weight, model[1].bias, model[3].weight))
    # R = 1^T (|W2| (|W1| 1 + |b1|) + |b2|): dR/dW1[j, k] = (1^T |W2|)[j], dR/dW2[i, j] = (|W1| 1 + |b1|)[j]
    expected_1 = w1 * w2.sum(0)[:, None].double()
    expected_2 = w2 * (w1.sum(1) + b1)[None, :].double()
    flow = synaptic_flow(model, masks, (3,))
    assert flow["1"].dtype == torch.float64
    torch.testing.assert_close(flow["1"], expected_1.double())
    torch.testing.assert_close(flow["3"], expected_2.double())
    assert flow["1"][0, 0] == 0


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_scoring_touches_neither_weights_nor_masks_nor_gradients_nor_the_mode(name):
    model, data = _net(4, 6, 3), toy_images(n_per_class=4, classes=3, shape=(1, 2, 2))
    method, masks = _method(name, model, data, samples_per_class=2, rounds=2)
    method.prune(0.5)  # scored once on a sparse network too
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = method.scores()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and all(m.training for m in model.modules())
    assert {k: s.shape for k, s in scores.items()} == {k: a.shape for k, a in masks.groups_alive("weight").items()}
    assert all(bool(torch.isfinite(s).all()) for s in scores.values())


def _alive(masks):
    return {name: int(alive.sum()) for name, alive in masks.groups_alive("weight").items()}


def test_synflow_rounds_reach_the_target_and_keep_the_layers_one_round_empties():
    """Tanaka et al.'s point: a layer's scores sum to the same flow R, so one round empties the widest layer
    (2048 weights, each about R/2048), while re-scoring after each round keeps every layer."""
    data = types.SimpleNamespace(input_shape=(32,))
    counts = {}
    for rounds in (1, 100):
        method, masks = _method("synflow", _net(32, 64, 16, 4), data, rounds=rounds, min_keep=0)
        method.prune(0.9)
        counts[rounds] = _alive(masks)
    assert sum(counts[100].values()) == round(0.1 * (2048 + 1024 + 64))
    assert counts[1]["1"] == 0 and min(counts[100].values()) > 0


def test_synflow_continues_from_where_the_masks_stand():
    method, masks = _method("synflow", _net(8, 16, 4), types.SimpleNamespace(input_shape=(8,)), rounds=5)
    levels = []
    original = method.allocation.prune
    method.allocation.prune = lambda granularity, scores, level: levels.append(level) or original(
        granularity, scores, level)
    method.prune(0.5)
    method.prune(0.75)
    assert levels[:5] == pytest.approx([1 - 0.5 ** (k / 5) for k in range(1, 6)])
    assert levels[5:] == pytest.approx([1 - 0.5 * 0.5 ** (k / 5) for k in range(1, 6)])
    assert sum(_alive(masks).values()) == 48 and method.state_dict() == {"level": 0.75}


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_n_of_m_through_the_allocation(name):
    model, data = _net(8, 8, 4), toy_images(n_per_class=2, classes=3, shape=(2, 2, 2))
    method, masks = _method(name, model, data, samples_per_class=1, pattern="2:4")
    method.prune(PruningMethod.schedule_target.__func__(type(method), method.cfg))
    for alive in masks.groups_alive("weight").values():
        assert (alive.reshape(alive.shape[0], -1, 4).sum(2) == 2).all()


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_only_weight_granularity(name):
    cfg = OmegaConf.create({"method": {"name": name, "granularity": "unit", "target_flops": None,
                                       "target_params": None, "layer_sparsity": None}})
    with pytest.raises(UserError, match="method.granularity='unit' is not allowed"):
        get_method_class(name).validate(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_a_run_pruned_at_initialisation_reaches_the_sparsity_and_trains(cli, tmp_path, name):
    options = ["method.rounds=10"] if name == "synflow" else []
    code, _, err = cli("train", f"method={name}", *options, "method.sparsity=0.9", "train.epochs=0",
                       "prune.epochs=0", "finetune.epochs=5", "finetune.lr=0.05", "schedule=one_shot",
                       "figures=false", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    summary = read_summary(tmp_path / "run")
    assert summary["density"] == pytest.approx(0.1, abs=1e-3)
    assert summary["accuracy"] > 0.3  # ten classes: chance is 0.1
