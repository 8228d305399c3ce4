"""Unit pruning by coupled channel groups (prunekit/pruning/coupling.py, allocation.py): every criterion removes
whole groups, so compaction keeps nothing for a coupled layer and gives the masked network's outputs; a group's
score reduces its producers' scores; ``method.round_to`` and ``method.layer_sparsity`` are honoured exactly.
Budgets of FLOPs and parameters: tests/test_budgets.py."""
import copy
import functools

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig
from prunekit.errors import UserError
from prunekit.models import build_model
from prunekit.models.adapt import ConvNetConfig
from prunekit.pruning.budget import CostModel
from prunekit.pruning.compaction import compact
from prunekit.pruning.coupling import channel_groups, group_scores
from prunekit.pruning.criteria.lrp import LRPConfig
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from tests.conftest import toy_images

SHAPE = (3, 32, 32)
CRITERIA = ("magnitude", "random", "lrp", "taylor", "gradient")


@functools.cache
def dense(name: str) -> nn.Module:
    """The small variant of ``name`` with BatchNorm running statistics of random data, as bench_compact settles
    them (with 0 / 1 a pruned channel's BatchNorm would emit 0 anyway); callers prune a copy."""
    torch.manual_seed(0)
    model = build_model(OmegaConf.structured(ConvNetConfig(name=name, variant="small")), SHAPE, 10).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, *SHAPE) * 2.0 + 0.5)
    return model.eval()


def unit_method(name: str, model: nn.Module, shape=SHAPE, **overrides):
    """Criterion ``name`` at unit granularity on ``model`` with fresh masks (as bench_compact builds it); criteria
    that read samples get one per class of a tiny random dataset. Returns (method, masks)."""
    method_class = get_method_class(name)
    reads = {"samples_per_class": 1} if method_class.reads_samples else {}
    cfg = OmegaConf.merge(OmegaConf.structured(LRPConfig if name == "lrp" else MethodConfig),
                          {"name": name, "granularity": "unit", **reads, **overrides})
    masks = MaskSet(model, shape)
    data = toy_images(2, 10, shape) if method_class.reads_samples else None
    return method_class(cfg, model, masks, data, 0), masks


def member_states(masks: MaskSet, group) -> torch.Tensor:
    """Per member of ``group`` (producers' weight rows, biases and BatchNorm entries, consumers' input columns), a
    row of whether each of the group's channels is alive there."""
    rows = []
    for name, units in group.producers.items():
        layer, norm = masks.layers[name], masks.batchnorms.get(name)
        rows.append(layer.weight_mask[units].flatten(1).any(1))
        owned = [getattr(layer, "bias_mask", None)] + ([norm.weight_mask, norm.bias_mask] if norm is not None else [])
        rows += [mask[units] for mask in owned if mask is not None]
    for name, positions in group.consumers.items():
        columns = masks.layers[name].weight_mask[:, positions]  # [outputs, channels, positions per channel, ...]
        rows.append(columns.transpose(0, 1).flatten(1).any(1))
    return torch.stack(rows)


def assert_whole_groups(masks: MaskSet) -> None:
    """Every channel of every coupled group is alive in all its members or in none, and pruned entries are 0."""
    for group in masks.channel_groups():
        states = member_states(masks, group)
        assert bool((states.all(0) | ~states.any(0)).all()), group.name
    for module in [*masks.layers.values(), *masks.batchnorms.values()]:
        for pname in ("weight", "bias"):
            if getattr(module, pname, None) is not None:
                assert not bool(getattr(module, pname)[~getattr(module, f"{pname}_mask")].any())


def assert_compact_equals_masked(model: nn.Module) -> nn.Module:
    """Compaction keeps no channel for a coupled layer and gives the masked network's outputs (eval mode)."""
    small, spec = compact(model, SHAPE, False)
    assert spec.coupled_kept == 0
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-4)
    return small


# One fast representative; every criterion on both networks at both scopes runs in the full suite (~10 s).
CASES = [pytest.param(criterion, network, scope,
                      marks=[] if (criterion, network, scope) == ("magnitude", "resnet18", "layer") else
                      [pytest.mark.slow])
         for criterion in CRITERIA for network in ("resnet18", "vgg16") for scope in ("layer", "global")]


@pytest.mark.parametrize("criterion, network, scope", CASES)
def test_every_criterion_removes_whole_groups_and_compaction_keeps_none(criterion, network, scope):
    model = copy.deepcopy(dense(network))
    method, masks = unit_method(criterion, model, scope=scope)
    alive_before = sum(int(a.sum()) for a in masks.channels_alive().values())
    method.prune(0.5)
    alive = sum(int(a.sum()) for a in masks.channels_alive().values())
    assert alive == pytest.approx(alive_before / 2, abs=len(masks.channel_groups()))
    assert_whole_groups(masks)
    small = assert_compact_equals_masked(model)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


class TinyResidual(nn.Module):
    """stem -> (a -> b) added back into the stem's stream -> mean -> head: the stream's channels are written by
    stem and b, a's channels by a alone."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1), nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b(torch.relu(self.a(x)))
        return self.head(x.mean((2, 3)))


HAND = {"stem": torch.tensor([4.0, 0.0, 3.0, 3.0]), "b": torch.tensor([0.0, 4.0, 3.0, 3.0]),
        "a": torch.tensor([1.0, 3.0, 2.0])}


@pytest.mark.parametrize("reduction, expected, kept", [
    ("sum", [4.0, 4.0, 6.0, 6.0], [False, False, True, True]),
    ("mean", [2.0, 2.0, 3.0, 3.0], [False, False, True, True]),
    ("max", [4.0, 4.0, 3.0, 3.0], [True, True, False, False]),
])
def test_a_streams_score_reduces_its_writers_scores(reduction, expected, kept):
    groups = channel_groups(TinyResidual(), (1, 5, 5))
    assert [(g.name, list(g.producers), sorted(g.consumers)) for g in groups] == [
        ("stem", ["stem", "b"], ["a", "head"]), ("a", ["a"], ["b"])]
    scores = group_scores(groups, HAND, reduction)
    assert scores["stem"].tolist() == expected and scores["a"].tolist() == HAND["a"].tolist()
    # the method ranks the stream's channels by that score: half go from stem, b and the columns of a and head
    model = TinyResidual()
    method, masks = unit_method("magnitude", model, (1, 5, 5), group_reduction=reduction, scope="layer")
    method.scores = lambda: HAND
    method.prune(0.5)
    assert masks.channels_alive()["stem"].tolist() == kept
    assert model.head.weight_mask.any(0).tolist() == kept
    assert model.a.weight_mask.transpose(0, 1).flatten(1).any(1).tolist() == kept


@pytest.mark.parametrize("how", [{"sparsity": 0.5}, {"target_flops": 0.5}], ids=["sparsity", "target_flops"])
def test_round_to_keeps_every_groups_channels_at_a_multiple(how):
    model = copy.deepcopy(dense("resnet18"))
    method, masks = unit_method("magnitude", model, round_to=8, **how)
    method.prune(method.schedule_target(method.cfg))
    counts = {name: int(alive.sum()) for name, alive in masks.channels_alive().items()}
    assert all(count % 8 == 0 and count > 0 for count in counts.values()), counts
    assert sum(counts.values()) < sum(g.size for g in masks.channel_groups())
    if "target_flops" in how:  # blocks of 8 channels: the budget still holds
        cost = CostModel(masks, "flops")
        assert cost.cost_of(cost.sizes(masks)) <= 0.5 * cost.dense


def stream_and_chain(masks: MaskSet):
    """A residual stream (several writers) and a group written by one convolution."""
    groups = masks.channel_groups()
    return (next(g for g in groups if len(g.producers) > 2), next(g for g in groups if len(g.producers) == 1))


@pytest.mark.parametrize("given", ["mapping", "yaml"])
def test_layer_sparsity_is_honoured_exactly_and_names_a_stream_by_any_writer(given, tmp_path):
    masks = MaskSet(copy.deepcopy(dense("resnet18")), SHAPE)
    stream, chain = stream_and_chain(masks)
    ratios = {list(stream.producers)[-1]: 0.5, chain.name: 0.3}  # the stream by its last writer
    if given == "yaml":
        (tmp_path / "ratios.yaml").write_text(yaml.safe_dump(ratios))
    method, masks = unit_method("magnitude", masks.model,
                                layer_sparsity=ratios if given == "mapping" else str(tmp_path / "ratios.yaml"))
    method.prune(method.schedule_target(method.cfg))
    expected = {g.name: g.size for g in masks.channel_groups()}
    expected.update({stream.name: round(0.5 * stream.size), chain.name: round(0.7 * chain.size)})
    assert {name: int(alive.sum()) for name, alive in masks.channels_alive().items()} == expected
    assert_whole_groups(masks)


def test_layer_sparsity_refuses_an_unknown_layer_and_two_fractions_for_one_stream():
    model = copy.deepcopy(dense("resnet18"))
    stream, _ = stream_and_chain(MaskSet(model, SHAPE))
    first, last = list(stream.producers)[0], list(stream.producers)[-1]
    for ratios, named in [({"features.99": 0.5}, "'features.99'"), ({first: 0.5, last: 0.25}, repr(last))]:
        with pytest.raises(UserError, match=r"method\.layer_sparsity") as refused:
            unit_method("magnitude", model, layer_sparsity=ratios)
        assert named in str(refused.value) and "\n" not in str(refused.value)
