"""Masks, group selection, schedules and the baseline methods, without the CLI."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig, ScheduleConfig
from prunekit.engine import build_optimizer
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.schedules import SCHEDULES, ScheduledPruning, sparsity_at
from prunekit.errors import UserError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _convnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 3),
    )


def _method(name, model, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig), {"name": name, **overrides})
    masks = MaskSet(model)
    return get_method_class(name)(cfg, model, masks, None, 0), masks


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_weight_pruning_hits_the_requested_density(scope):
    model = _mlp()
    method, masks = _method("magnitude", model, scope=scope)
    method.prune(0.9)
    assert abs(masks.density() - 0.1) < 0.01
    total = sum(w.numel() for w in _weights(model))
    assert sum(int((w == 0).sum()) for w in _weights(model)) == total - sum(int(w.weight_mask.sum()) for w in masks.layers.values())
    if scope == "layer":
        for w in _weights(model):
            assert abs((w != 0).float().mean().item() - 0.1) < 0.05


def test_global_magnitude_removes_the_smallest_weights():
    model = _mlp()
    method, masks = _method("magnitude", model)
    all_abs = torch.cat([w.detach().abs().flatten() for w in _weights(model)])
    method.prune(0.5)
    kept = torch.cat([w.detach().abs().flatten() for w in _weights(model)])
    threshold = all_abs.sort().values[all_abs.numel() // 2]
    assert (kept[kept > 0] >= threshold - 1e-7).all()


def test_masks_stay_zero_through_sgd_with_momentum_and_weight_decay():
    model = _mlp()
    method, masks = _method("magnitude", model)
    opt = build_optimizer([{"params": list(model.parameters())}], OmegaConf.create(
        {"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.1}))
    x, y = torch.randn(32, 20), torch.randint(0, 3, (32,))
    # Build momentum on every weight first, then prune: the momentum buffer must not revive them.
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    method.prune(0.8)
    pruned = [~m.weight_mask for m in masks.layers.values()]
    for step in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        masks.before_step()
        opt.step()
        masks.after_step(step)
        for w, p in zip(_weights(model), pruned):
            assert (w[p] == 0).all()
    assert abs(masks.density() - 0.2) < 0.01


def test_unit_pruning_removes_filter_bias_and_batchnorm_entry():
    model = _convnet()
    method, masks = _method("magnitude", model, granularity="unit")
    method.prune(0.5)
    conv, bn = model[0], model[1]
    dead = ~conv.weight_mask.flatten(1).any(1)
    assert dead.sum() >= 1
    assert (conv.bias[dead] == 0).all() and (bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all()
    # the classifier's units are the classes: never pruned
    assert model[7].weight_mask.flatten(1).any(1).all()
    # a dead filter's output is exactly zero after BatchNorm in eval mode
    model.eval()
    out = model[:3](torch.randn(2, 1, 5, 5))
    assert (out[:, dead] == 0).all()


def test_input_pruning_removes_whole_columns_of_the_first_layer():
    model = _mlp()
    method, masks = _method("magnitude", model, granularity="input")
    method.prune(0.75)
    first = model[1].weight
    columns_alive = (first != 0).any(0)
    assert int(columns_alive.sum()) == 5
    assert all((w != 0).all() for w in _weights(model)[1:])


def test_random_pruning_is_seeded_and_nested():
    model_a, model_b = _mlp(), _mlp()
    method_a, masks_a = _method("random", model_a)
    method_b, masks_b = _method("random", model_b)
    method_a.prune(0.5)
    before = [m.weight_mask.clone() for m in masks_a.layers.values()]
    method_a.prune(0.8)
    for old, new in zip(before, [m.weight_mask for m in masks_a.layers.values()]):
        assert not (new & ~old).any()  # a pruned weight stays pruned
    method_b.prune(0.8)
    for a, b in zip(masks_a.layers.values(), masks_b.layers.values()):
        assert torch.equal(a.weight_mask, b.weight_mask)


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserError, match="magnitude"):
        get_method_class("magnitud")


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_are_monotone_and_exact_at_both_ends(name):
    cfg = OmegaConf.merge(OmegaConf.structured(ScheduleConfig),
                          {"name": name, "initial_sparsity": 0.1, "start": 0.2, "end": 0.8, "steps": 4})
    values = [sparsity_at(cfg, 0.95, t / 1000) for t in range(1001)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert values[0] == 0.1 and values[199] == 0.1  # initial sparsity until the start point
    assert values[800] == 0.95 and values[-1] == 0.95  # exactly the target from the end point on
    if name == "one_shot":
        assert values[200] == 0.95
    if name == "iterative":
        assert len(set(values)) == 5  # initial + 4 equal steps


def test_scheduled_pruning_follows_the_schedule_per_step():
    model = _mlp()
    method, masks = _method("magnitude", model)
    cfg = OmegaConf.merge(OmegaConf.structured(ScheduleConfig), {"name": "linear", "start": 0.0, "end": 1.0,
                                                                 "frequency": 5})
    pruner = ScheduledPruning(method, cfg, 0.9, total_steps=100)
    pruner.start()
    assert masks.density() == 1.0
    densities = []
    for step in range(1, 101):
        pruner.after_step(step)
        densities.append(masks.density())
    assert abs(densities[49] - 0.55) < 0.01
    assert abs(densities[-1] - 0.1) < 0.005
    assert all(b <= a for a, b in zip(densities, densities[1:]))
