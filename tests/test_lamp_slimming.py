"""LAMP (prunekit/pruning/criteria/lamp.py) against its formula by hand, and its global selection; network slimming
(prunekit/pruning/methods/slimming.py): the penalty's subgradient, |gamma| scores, whole coupled groups on a ResNet,
the settings it refuses, and a run of its preset."""
import copy
import csv

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import read_metrics, read_summary
from prunekit.config import MethodConfig
from prunekit.errors import UserError
from prunekit.pruning.coupling import group_scores
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.methods.slimming import SlimmingConfig
from tests.test_structured import SHAPE, assert_compact_equals_masked, assert_whole_groups, dense

# layer one [3, -1, 2]: squares 1 < 4 < 9, tails 14, 13, 9; layer two [5, -4, 6, 0.1]: squares 0.01 < 16 < 25 < 36,
# tails 77.01, 77, 61, 36
HAND_WEIGHTS = {"0": [[3.0, -1.0, 2.0]], "1": [[5.0], [-4.0], [6.0], [0.1]]}
HAND_LAMP = {"0": [[1.0, 1 / 14, 4 / 13]], "1": [[25 / 61], [16 / 77], [1.0], [0.01 / 77.01]]}


def two_layers() -> nn.Module:
    """3 inputs -> 1 unit -> 4 outputs, with the hand weights."""
    model = nn.Sequential(nn.Linear(3, 1, bias=False), nn.Linear(1, 4, bias=False))
    with torch.no_grad():
        for name, weight in HAND_WEIGHTS.items():
            model.get_submodule(name).weight.copy_(torch.tensor(weight))
    return model


def method(name: str, model: nn.Module, shape=None, config=MethodConfig, **overrides):
    """The method ``name`` on ``model`` with fresh masks (its config's defaults, then ``overrides``)."""
    cfg = OmegaConf.merge(OmegaConf.structured(config), {"name": name, **overrides})
    masks = MaskSet(model, shape)
    return get_method_class(name)(cfg, model, masks, None, 0), masks


def test_lamp_scores_are_the_formula_by_hand_and_a_pruned_weight_leaves_the_sums():
    lamp, masks = method("lamp", two_layers(), scope="global")
    scores = lamp.scores()
    for name, expected in HAND_LAMP.items():
        torch.testing.assert_close(scores[name], torch.tensor(expected))
    masks.set_groups("weight", {"1": torch.tensor([[True], [True], [True], [False]])})  # 0.1 goes
    torch.testing.assert_close(lamp.scores()["1"], torch.tensor([[25 / 61], [16 / 77], [1.0], [0.0]]))


@pytest.mark.parametrize("name, kept", [
    # 4 of 7 stay: LAMP keeps 2 of layer one (scores 1 and 4/13 beat 16/77); magnitude keeps 3, 6, 5, -4
    ("lamp", {"0": [[True, False, True]], "1": [[True], [False], [True], [False]]}),
    ("magnitude", {"0": [[True, False, False]], "1": [[True], [True], [True], [False]]}),
])
def test_lamp_selects_globally_by_its_scores(name, kept):
    pruner, masks = method(name, two_layers(), scope="global", min_keep=0, sparsity=3 / 7)
    pruner.prune(3 / 7)
    assert {n: m.weight_mask.tolist() for n, m in masks.layers.items()} == kept


def bn_net() -> nn.Module:
    """conv -> BatchNorm (gamma 0.5, -0.2, 0) -> mean -> classifier."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -0.2, 0.0]))
    return model


def test_the_penalty_adds_lambda_times_the_sign_of_gamma_to_the_task_gradient_and_scores_are_its_size():
    model = bn_net()
    slimming, _ = method("slimming", model, (1, 2, 2), SlimmingConfig, granularity="unit", penalty=0.1)
    x, y = torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    nn.functional.cross_entropy(model(x), y).backward()
    task = model[1].weight.grad.clone()
    slimming.before_step()
    torch.testing.assert_close(model[1].weight.grad, task + 0.1 * torch.tensor([1.0, -1.0, 0.0]))
    assert slimming.scores() == {"0": pytest.approx([0.5, 0.2, 0.0])}


def slimming_resnet(**overrides):
    """ResNet18-small with seeded random BatchNorm scales, slimming with one global ranking."""
    model = copy.deepcopy(dense("resnet18"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.weight.copy_(torch.randn(norm.num_features, generator=generator))
    return (model, *method("slimming", model, SHAPE, SlimmingConfig, granularity="unit", scope="global",
                           **overrides))


@pytest.mark.slow
def test_slimming_removes_the_coupled_groups_of_least_mean_gamma_and_compaction_keeps_none():
    model, slimming, masks = slimming_resnet()
    assert slimming.cfg.group_reduction == "mean"  # a stream by the mean of its writers' |gamma|
    by_group = group_scores(masks.channel_groups(), slimming.scores(), "mean")
    slimming.prune(0.5)
    assert_whole_groups(masks)
    alive = masks.channels_alive()
    total = sum(a.numel() for a in alive.values())
    assert sum(int(a.sum()) for a in alive.values()) == round(0.5 * total)
    threshold = min(float(by_group[k][a].min()) for k, a in alive.items())
    assert all(float(by_group[k][~a].max()) <= threshold for k, a in alive.items() if not a.all())
    assert_compact_equals_masked(model)


def cnn_masks() -> MaskSet:
    """conv -> BatchNorm -> hidden Linear without one -> classifier (8 + 6 channels)."""
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 3))
    return MaskSet(model, (1, 4, 4))


@pytest.mark.parametrize("overrides, named", [
    ({"scope": "layer"}, "method.scope=layer"),
    ({"sparsity": 0.6}, "method.sparsity=0.6"),  # 8 of the 14 channels, but the conv can give 7
    ({"layer_sparsity": {"4": 0.5}}, "method.layer_sparsity"),
    ({"target_flops": 0.01}, "method.target_flops=0.01"),
])
def test_slimming_refuses_what_would_prune_a_layer_without_batchnorm(overrides, named):
    cfg = OmegaConf.merge(OmegaConf.structured(SlimmingConfig),
                          {"name": "slimming", "granularity": "unit", "scope": "global", **overrides})
    with pytest.raises(UserError) as refused:
        get_method_class("slimming").check_network(cfg, cnn_masks())
    assert named in str(refused.value) and "\n" not in str(refused.value)
    get_method_class("slimming").check_network(OmegaConf.merge(cfg, {"scope": "global", "sparsity": 0.5,
                                                                     "layer_sparsity": None,
                                                                     "target_flops": None}), cnn_masks())


def test_a_network_without_batchnorm_is_refused_in_one_line():
    cfg = OmegaConf.merge(OmegaConf.structured(SlimmingConfig), {"name": "slimming", "granularity": "unit"})
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(UserError, match="BatchNorm") as refused:
        get_method_class("slimming").check_network(cfg, MaskSet(mlp, (4,)))
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_the_cli_refuses_a_network_without_batchnorm_in_one_line(cli):
    code, _, err = cli("train", "method=slimming", "model=mlp", "hydra.run.dir=run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "BatchNorm" in err


@pytest.mark.slow
def test_the_preset_removes_the_requested_share_of_channels_at_the_end_of_the_pruning_stage(cli, tmp_path):
    code, _, err = cli("train", "experiment=slimming_fashion_mnist", "dataset=digits", "train.epochs=1",
                       "prune.epochs=2", "finetune.epochs=1", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    # dense through the first epoch of the pruning stage (the penalty acts), pruned after its last step
    densities = [r["density"] for r in read_metrics(tmp_path / "run") if r.get("stage") == "prune"]
    assert densities[0] == 1.0 > densities[1]
    with open(tmp_path / "run" / "layers.csv") as table:
        rows = list(csv.DictReader(table))[:-1]  # the classifier's units are the classes
    kept = {row["layer"]: int(row["compact_shape"].split("x")[0]) for row in rows}
    total = {row["layer"]: int(row["shape"].split("x")[0]) for row in rows}
    assert sum(kept.values()) == sum(total.values()) // 2 and kept["fc"] == total["fc"]
    summary = read_summary(tmp_path / "run")
    assert summary["compact_coupled_kept"] == 0 and summary["sparsity_target"] == 0.5
