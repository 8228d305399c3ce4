"""N:M sparsity (method.pattern): exactly N of every M consecutive weights of a row stay, chosen by the method's
scores, for any weight-granularity criterion; settings it cannot honour are one line."""
import pytest
import torch
from omegaconf import OmegaConf

from prunekit.config import MethodConfig
from prunekit.errors import UserError
from prunekit.pruning.allocation import Allocation
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.patterns import Pattern, n_of_m, pattern_of


def test_n_of_m_keeps_the_best_n_alive_of_every_group_by_hand():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.5, 0.6, 0.7, 0.8]])
    alive = torch.tensor([[True, True, True, True, True, True, False, True]])
    keep = n_of_m(scores, alive, Pattern(2, 4))
    assert keep.tolist() == [[True, False, True, False, False, True, False, True]]  # the dead 0.7 never returns
    few = torch.tensor([[True, False, False, False]])
    assert n_of_m(torch.ones(1, 4), few, Pattern(2, 4)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("text", ["2:4", "4:8"])
def test_magnitude_with_a_pattern_keeps_exactly_n_of_every_m(text):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    masks = MaskSet(model)
    cfg = OmegaConf.merge(OmegaConf.structured(MethodConfig(name="magnitude")), {"pattern": text})
    pattern = pattern_of(cfg)
    scores = {name: layer.weight.detach().abs() for name, layer in masks.layers.items()}
    Allocation(cfg, masks).prune("weight", scores, pattern.sparsity)
    for name, layer in masks.layers.items():
        groups = layer.weight_mask.reshape(layer.weight.shape[0], -1, pattern.m)
        assert torch.all(groups.sum(-1) == pattern.n)
        weights = scores[name].reshape(groups.shape)
        kept_min = weights.masked_fill(~groups, torch.inf).min(-1).values
        dropped_max = weights.masked_fill(groups, -torch.inf).max(-1).values
        assert torch.all(kept_min >= dropped_max)  # the N largest of each group
        assert torch.all(layer.weight[~layer.weight_mask] == 0)


@pytest.mark.parametrize("text", ["2", "4:2", "0:4", "a:b", "2:2"])
def test_a_malformed_pattern_is_one_line(text):
    cfg = OmegaConf.create({"pattern": text})
    with pytest.raises(UserError, match="method.pattern"):
        pattern_of(cfg)


@pytest.mark.parametrize("extra, named", [
    (("method.pattern=3:8",), "fc2 has rows of 300"),
    (("method.pattern=2:4", "method.granularity=unit"), "method.pattern=2:4"),
    (("method.pattern=2:4", "method.sparsity=0.7"), "method.sparsity=0.7"),
])
def test_a_pattern_the_run_cannot_honour_is_one_line(cli, extra, named):
    code, _, err = cli("train", "model.hidden=[300,100]", *extra, "hydra.run.dir=bad")
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
