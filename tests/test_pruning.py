"""Masks, group selection, schedules and the baseline methods, without the CLI."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig, ScheduleConfig
from prunekit.pruning.methods.gumbel import GumbelConfig
from prunekit.engine import build_optimizer
from prunekit.metrics import collapse
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.schedules import SCHEDULES, ScheduledPruning, sparsity_at
from prunekit.pruning.selection import select_groups
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


def _method(name, model, input_shape=None, **overrides):
    """``name`` on ``model``; unit pruning writes coupled groups, which need the ``input_shape`` of one sample."""
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig), {"name": name, **overrides})
    masks = MaskSet(model, input_shape)
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
    kept = sum(int(w.weight_mask.sum()) for w in masks.layers.values())
    assert sum(int((w == 0).sum()) for w in _weights(model)) == total - kept
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
    method, masks = _method("magnitude", model, (1, 5, 5), granularity="unit")
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
    cfg = OmegaConf.merge(OmegaConf.structured(SCHEDULES.get(name).config or ScheduleConfig),
                          {"name": name, "initial_sparsity": 0.1, "start": 0.2, "end": 0.8, "steps": 4})
    values = [sparsity_at(cfg, 0.95, t / 1000) for t in range(1001)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert values[0] == 0.1 and values[199] == 0.1  # initial sparsity until the start point
    assert values[800] == 0.95 and values[-1] == 0.95  # exactly the target from the end point on
    if name == "one_shot":
        assert values[200] == 0.95
    if name == "iterative":
        assert len(set(values)) == 5  # initial + 4 equal steps
    if name == "imp":  # rounds of 20% of what remains from 0.9 density: 0.72, 0.576, ..., then the target
        assert values[200] == pytest.approx(0.28) and len(set(values)) == 1 + 13


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


# -- the layer-collapse guard (method.min_keep) ---------------------------------------------------------
def _narrow_first_layer_mlp():
    """40 -> 24 -> 8 -> 3 with fc1 scaled down 1000x: every fc1 unit has a smaller L1 norm than any fc2
    unit, as a wide first layer does, so a global ranking of units reaches fc1 first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[1].weight.mul_(1e-3)
    return model


def _units_alive(masks):
    return {name: int(alive.sum()) for name, alive in masks.groups_alive("unit").items()}


def _weights_alive(masks):
    return {name: int(module.weight_mask.sum()) for name, module in masks.layers.items()}


@pytest.mark.parametrize("min_keep, kept", [(1, {"1": 1, "3": 7}), (2, {"1": 2, "3": 6}), (0, {"1": 0, "3": 8})])
def test_global_unit_pruning_keeps_each_layers_floor_and_the_exact_count(min_keep, kept):
    model = _narrow_first_layer_mlp()
    method, masks = _method("magnitude", model, (40,), granularity="unit", scope="global", min_keep=min_keep)
    method.prune(0.75)  # 32 hidden units -> 8 kept; without a floor all of them are fc2's
    # counted by bias: once fc1 is gone, the 8 fc2 units it fed lose every input column (their weight rows)
    assert {name: int(masks.layers[name].bias_mask.sum()) for name in kept} == kept
    # the classifier's units are the classes: never pruned; it reads exactly fc2's kept units
    assert model[5].bias_mask.all() and int(model[5].weight_mask.any(0).sum()) == kept["3"]
    expected = {"collapsed_layers": [], "classes_without_path": []} if min_keep else {
        "collapsed_layers": ["1", "3", "5"], "classes_without_path": [0, 1, 2]}
    assert collapse(model, (40,)) == expected


def test_the_floor_reserves_a_layers_best_groups():
    model = _narrow_first_layer_mlp()
    norms = model[1].weight.detach().abs().sum(1)
    method, masks = _method("magnitude", model, (40,), granularity="unit", scope="global", min_keep=2)
    method.prune(0.75)
    assert torch.equal(masks.groups_alive("unit")["1"].nonzero().flatten(), norms.topk(2).indices.sort().values)


def test_fractional_floor_counts_all_of_a_layers_groups_not_the_alive_ones():
    model = _narrow_first_layer_mlp()
    method, masks = _method("magnitude", model, (40,), granularity="unit", scope="global", min_keep=0.25)
    method.prune(0.5)  # 16 kept: every fc2 unit, and the best 8 of fc1 (above its floor of 6)
    assert _units_alive(masks) == {"1": 8, "3": 8}
    method.prune(0.75)  # 8 kept: fc1's floor is ceil(0.25 * 24) = 6 of its 24 units, not 2 of its 8 alive
    assert _units_alive(masks) == {"1": 6, "3": 2}


def test_layer_scope_raises_a_layer_to_its_floor_and_takes_the_difference_from_the_most_slack():
    model = _mlp()  # 320, 128 and 24 weights: at 95% sparsity the quotas are 16, 6 and 1
    method, masks = _method("magnitude", model, scope="layer", min_keep=4)
    method.prune(0.95)
    assert _weights_alive(masks) == {"1": 13, "3": 6, "5": 4}  # fc3 gets 3 more, fc1 (slack 12) gives 3


def test_layer_scope_levels_the_largest_slacks_first():
    alive = {name: torch.ones(size, dtype=torch.bool) for name, size in (("a", 100), ("b", 90), ("c", 10), ("d", 10))}
    scores = {name: torch.arange(a.numel(), dtype=torch.float) for name, a in alive.items()}
    # quotas 10, 9, 1, 1; floors 4 each: c and d need 6 more, taken from the slacks 6 and 5, levelled.
    keep = select_groups(scores, alive, 0.9, "layer", 4)
    assert {name: int(k.sum()) for name, k in keep.items()} == {"a": 6, "b": 7, "c": 4, "d": 4}
    assert keep["a"][-6:].all() and keep["c"][-4:].all()  # the best-scoring groups of each layer


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_floors_above_the_total_are_kept(scope):
    model = _mlp()
    method, masks = _method("magnitude", model, scope=scope)
    method.prune(0.99999)  # round(1e-5 * 472) = 0 weights asked for; the floors keep one per layer
    assert _weights_alive(masks) == {"1": 1, "3": 1, "5": 1}


def test_unit_pruning_keeps_every_conv_of_a_batchnorm_net_alive():
    model = _convnet()
    with torch.no_grad():
        model[0].weight.mul_(1e-3)  # the first conv's filters have the smallest L1 norms
    method, masks = _method("magnitude", model, (1, 5, 5), granularity="unit", scope="global")
    method.prune(0.6)  # 10 filters -> 4 kept
    assert _units_alive(masks) == {"0": 1, "3": 3}
    assert int((model[1].weight != 0).sum()) == 1  # the kept filter keeps its BatchNorm entry
    assert collapse(model, (1, 5, 5)) == {"collapsed_layers": [], "classes_without_path": []}


def test_random_and_input_pruning_honour_the_floor():
    method, masks = _method("random", _mlp(), scope="layer", min_keep=3)
    method.prune(0.99)
    assert _weights_alive(masks) == {"1": 3, "3": 3, "5": 3}
    method, masks = _method("magnitude", _mlp(), granularity="input", min_keep=0.5)
    method.prune(0.9)  # 2 of fc1's 20 inputs asked for, 10 kept
    assert int(masks.groups_alive("input")["1"].sum()) == 10


def test_gumbel_emergent_mask_keeps_the_floor_at_the_same_count():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    cfg = OmegaConf.merge(OmegaConf.structured(GumbelConfig), {"name": "gumbel", "target": "emergent", "min_keep": 2})
    masks = MaskSet(model)
    method = get_method_class("gumbel")(cfg, model, masks, None, 0)
    method.start()
    with torch.no_grad():
        first, last = method.gates.logits["1"], method.gates.logits["3"]
        first.copy_(torch.linspace(1, 2, first.numel()).view_as(first))  # 192 open gates
        last.copy_(torch.linspace(-2, -1, last.numel()).view_as(last))  # every gate closed
    method.finish()
    assert _weights_alive(masks) == {"1": 190, "3": 2}  # fc3's best 2 replace fc1's weakest 2 open gates
    assert masks.layers["3"].weight_mask.flatten()[-2:].all() and not masks.layers["1"].weight_mask.flatten()[:2].any()


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_min_keep_must_be_finite_and_not_negative(value):
    from prunekit.validation import check_schema

    cfg = OmegaConf.create({"method": OmegaConf.merge(OmegaConf.structured(MethodConfig),
                                                      {"name": "magnitude", "min_keep": value})})
    with pytest.raises(UserError, match=r"method\.min_keep="):
        check_schema(cfg)
