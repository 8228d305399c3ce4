"""Pruning to a budget (prunekit/pruning/budget.py): ``method.target_flops`` / ``method.target_params`` land on the
budget within one channel (or input feature) as prunekit.metrics measures it, before and after compaction, at unit
and input granularity, global and per-layer scope, at the end of a schedule; an unreachable budget is refused."""
import copy
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from prunekit.errors import UserError
from prunekit.metrics import flops_per_layer, summary_metrics
from prunekit.models import build_model
from prunekit.models.mlp import MLPConfig
from prunekit.pruning.budget import CostModel
from prunekit.pruning.compaction import compact
from test_structured import SHAPE, assert_compact_equals_masked, dense, unit_method

MLP_SHAPE = (1, 8, 8)


def mlp():
    """64 inputs -> 40 -> 20 -> 10 classes."""
    return build_model(OmegaConf.structured(MLPConfig(name="mlp", hidden=[40, 20])), MLP_SHAPE, 10)


def measured(model, kind: str, shape) -> tuple[int, int, float]:
    """(cost of the network as it is, dense cost, their fraction) by prunekit.metrics, for FLOPs or parameters."""
    s = summary_metrics(model, shape)
    pair = ("flops_effective", "flops_dense") if kind == "flops" else ("params_effective", "params_total")
    return s[pair[0]], s[pair[1]], s[f"{kind}_fraction"]


def assert_on_budget(method, masks, kind: str, target: float, shape=SHAPE) -> int:
    """The network costs at most ``target`` of the dense cost as the metrics measure it, the cost model agrees
    exactly, and putting back one of the removed candidates (the last one removed among them) would exceed the
    budget. Returns the measured cost."""
    achieved, total, fraction = measured(masks.model, kind, shape)
    assert fraction == achieved / total
    cost, allocation, granularity = CostModel(masks, kind), method.allocation, method.cfg.granularity
    sizes, buckets = cost.sizes(masks), allocation.buckets(granularity)
    assert (cost.cost(sizes, buckets, {}), cost.dense) == (achieved, total)
    assert achieved <= target * total
    alive, _ = allocation.candidates(granularity)
    put_back = [cost.cost(sizes, buckets, {key: -1}) for key, a in alive.items() if not bool(a.all())]
    assert put_back and max(put_back) > target * total
    return achieved


def compact_cost(small, kind: str, shape) -> int:
    """What the compact network ``small`` costs, measured on it."""
    if kind == "flops":
        return sum(flops_per_layer(small, shape).values())
    return sum(p.numel() for p in small.parameters())


# One fast representative; both kinds, scopes and networks run in the full suite.
CASES = [pytest.param(network, kind, scope, marks=[] if (network, kind, scope) == ("resnet18", "flops", "global")
                      else [pytest.mark.slow])
         for network in ("resnet18", "vgg16") for kind in ("flops", "params") for scope in ("global", "layer")]


@pytest.mark.parametrize("network, kind, scope", CASES)
def test_a_unit_budget_lands_within_one_channel_before_and_after_compaction(network, kind, scope):
    model = copy.deepcopy(dense(network))
    method, masks = unit_method("magnitude", model, scope=scope, **{f"target_{kind}": 0.5})
    assert method.schedule_target(method.cfg) == 0.5
    method.prune(0.5)
    achieved = assert_on_budget(method, masks, kind, 0.5)
    small = assert_compact_equals_masked(model)
    assert compact_cost(small, kind, SHAPE) == achieved


@pytest.mark.parametrize("kind", ["flops", "params"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_an_input_budget_lands_within_one_feature(kind, scope):
    model = mlp()
    method, masks = unit_method("magnitude", model, MLP_SHAPE, granularity="input", scope=scope,
                                **{f"target_{kind}": 0.5})
    method.prune(method.schedule_target(method.cfg))
    achieved = assert_on_budget(method, masks, kind, 0.5, MLP_SHAPE)
    small, spec = compact(model, MLP_SHAPE, True)
    assert spec.inputs_kept is not None and len(spec.inputs_kept) < 64
    # the compact network reads only the kept features; its cost is what the metrics counted on the masked one
    shape = (len(spec.inputs_kept),)
    assert compact_cost(small, kind, shape) == achieved


@pytest.mark.slow
def test_the_steps_of_a_schedule_move_toward_the_budget_and_the_last_lands_on_it():
    model = copy.deepcopy(dense("resnet18"))
    method, masks = unit_method("magnitude", model, scope="global", target_flops=0.25)
    fractions = []
    for level in (0.25, 0.5, 0.75):  # 1 - F at the last step
        method.prune(level)
        fractions.append(summary_metrics(model, SHAPE)["flops_fraction"])
        assert fractions[-1] <= 1 - level
    assert fractions == sorted(fractions, reverse=True) and fractions[0] > 0.5
    assert_on_budget(method, masks, "flops", 0.25)


@pytest.mark.parametrize("round_to", [1, 8])
def test_an_unreachable_budget_is_refused_before_the_run(round_to):
    model = mlp()  # with one unit per hidden layer left the network still costs about 2% of its FLOPs
    method, masks = unit_method("magnitude", model, MLP_SHAPE, target_flops=0.001, min_keep=1, round_to=round_to)
    with pytest.raises(UserError, match=r"method\.target_flops=0\.001") as refused:
        type(method).check_network(method.cfg, masks)
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_a_run_to_half_the_flops_compacts_exactly_to_it(tmp_path):
    env = {**os.environ, "PRUNEKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "prunekit", "train", "model=cnn", "method=magnitude",
                           "method.granularity=unit", "method.target_flops=0.5", "train.epochs=1", "prune.epochs=1",
                           "finetune.epochs=1", "figures=false", "latency=false", "hydra.run.dir=run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["target_flops"] == 0.5 and summary["sparsity_target"] is None
    assert summary["compact_coupled_kept"] == 0
    assert summary["flops_fraction"] == pytest.approx(summary["flops_compact"] / summary["flops_dense"])
    assert summary["flops_fraction"] <= 0.5
