"""Lottery tickets: iterative magnitude pruning's rounds, rewinding to iteration k, learning-rate rewinding and the
random re-initialisation control (prunekit/stages/rewind.py, schedule=imp)."""
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import interrupt_after, read_metrics, read_summary
from prunekit import engine
from prunekit.checkpoints import read
from prunekit.pruning.schedules import rounds, sparsity_at, stage_epochs
from prunekit.pruning.masks import MaskSet
from prunekit.stages.rewind import Rewinder, RewindCapture, rewound_options

FAST = ("train", "train.epochs=2", "finetune.epochs=1", "figures=false", "latency=false", "compact=false",
        "method=magnitude")


def _imp(rate: float = 0.2, initial: float = 0.0):
    return OmegaConf.create({"name": "imp", "rate": rate, "initial_sparsity": initial, "start": 0.0, "end": 1.0,
                             "frequency": 1, "steps": 5})


def test_imp_rounds_remove_the_rate_of_what_remains_until_the_target():
    levels = rounds(_imp(0.2), 0.8)
    densities = [1 - level for level in levels]
    assert densities[:7] == pytest.approx([0.8 ** r for r in range(1, 8)])
    assert levels[-1] == 0.8 and len(levels) == 8  # 0.8^7 = 0.2097 is not yet 0.2: an eighth, smaller round
    assert rounds(_imp(0.2), 0.964) == pytest.approx([1 - 0.8 ** r for r in range(1, 15)] + [0.964])
    assert rounds(_imp(0.5), 0.5) == [0.5] and rounds(_imp(0.5), 0.3) == [0.3]
    # the stage trains prune.epochs between two rounds; round k falls at k / (rounds - 1) of it
    assert stage_epochs(_imp(0.2), 0.8, 3) == 21 and stage_epochs(_imp(0.5), 0.5, 3) == 0
    assert [sparsity_at(_imp(0.5), 0.875, t) for t in (0.0, 0.49, 0.5, 0.99, 1.0)] == [0.5, 0.5, 0.75, 0.75, 0.875]


def test_rewinding_restarts_the_cosine_at_every_pruning_step():
    prune = OmegaConf.create({"rewind": "lr", "lr_schedule": "cosine", "epochs": 1})
    assert rewound_options(prune).lr_schedule == "cycle"
    assert rewound_options(OmegaConf.merge(prune, {"rewind": "none"})).lr_schedule == "cosine"
    assert rewound_options(OmegaConf.merge(prune, {"lr_schedule": "constant"})).lr_schedule == "constant"


def test_the_rewinder_puts_back_the_captured_weights_under_the_masks_and_forgets_momentum():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    masks = MaskSet(model)
    state = SimpleNamespace(model=model, masks=masks, rewind=None)
    capture = RewindCapture(state, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in (1, 2, 3):
        model(torch.randn(5, 4)).square().sum().backward()
        optimizer.step()
        if step == 2:
            at_two = {k: v.clone() for k, v in model.state_dict().items()}
        capture.after_step(step)
    masks.set_groups("weight", {name: layer.weight.abs() > layer.weight.abs().median()
                                for name, layer in masks.layers.items()})
    Rewinder("weights", state, optimizer)()
    assert not optimizer.state
    for name, value in model.state_dict().items():
        if name.endswith(".weight"):
            mask = model.state_dict()[name + "_mask"]
            assert torch.equal(value, at_two[name] * mask) and not mask.all()
        elif not name.endswith("weight_mask"):
            assert torch.equal(value, at_two[name])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Rewinder("lr", state, optimizer)()  # learning-rate rewinding leaves the weights alone
    assert _equal(before, model.state_dict())


def test_a_rewind_after_unit_pruning_keeps_the_bias_masks_and_the_removed_units_dead():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    masks = MaskSet(model, (4,))
    state = SimpleNamespace(model=model, masks=masks, rewind=None)
    RewindCapture(state, 0)
    masks.set_groups("unit", {"0": torch.tensor([True, False, True])})
    Rewinder("weights", state)()
    assert model[0].bias_mask.tolist() == [True, False, True] and model[0].bias[1] == 0
    assert torch.all(model[0].weight[1] == 0) and torch.all(model[2].weight[:, 1] == 0)


def _record_weights_after_step(monkeypatch, step: int) -> dict:
    """The dense weights after optimiser step ``step`` of the first training, seen from outside the stages."""
    seen, original = {}, engine.train_step

    def recording(model, optimizer, x, y, hooks, at, accelerated=None, share=1.0):
        out = original(model, optimizer, x, y, hooks, at, accelerated, share)
        if at == step and "weights" not in seen:
            seen["weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return out

    monkeypatch.setattr(engine, "train_step", recording)
    return seen


def _final_weights(run_dir) -> dict:
    return read(run_dir / "checkpoints" / "last.pt", "last")["state"]["model"]


@pytest.mark.slow
def test_rewinding_restores_exactly_the_iteration_k_weights_under_the_new_mask(cli, tmp_path, monkeypatch):
    seen = _record_weights_after_step(monkeypatch, 7)
    code, _, err = cli(*FAST, "finetune.epochs=0", "prune.epochs=0", "schedule=imp", "method.sparsity=0.7",
                       "prune.rewind=weights", "prune.rewind_iteration=7", "hydra.run.dir=ticket")
    assert code == 0, err
    final, dense = _final_weights(tmp_path / "ticket"), torch.load(tmp_path / "ticket" / "checkpoints" / "dense.pt")
    early = seen["weights"]
    scores = torch.cat([dense[k].abs().flatten() for k in dense if k.endswith(".weight")])
    threshold = scores.kthvalue(round(0.7 * scores.numel())).values
    for key, value in final.items():
        if key.endswith("weight_mask"):
            continue
        if key.endswith(".weight"):
            mask = final[key.replace(".weight", ".weight_mask")]
            assert torch.equal(mask, dense[key].abs() > threshold)  # chosen on the trained weights ...
            assert torch.equal(value, early[key] * mask)  # ... and rewound to step 7 under the new mask
        else:
            assert torch.equal(value, early[key])  # biases (and any buffer) rewound too
    assert abs(read_summary(tmp_path / "ticket")["density"] - 0.3) < 1e-3


@pytest.mark.slow
def test_rewind_point_is_cached_with_the_dense_network(cli, tmp_path):
    args = (*FAST, "finetune.epochs=0", "prune.epochs=0", "schedule=imp", "method.sparsity=0.5",
            "prune.rewind=weights")
    for name, extra in (("a", "prune.rewind_iteration=3"), ("b", "prune.rewind_iteration=3"),
                        ("c", "prune.rewind_iteration=5")):
        assert cli(*args, extra, f"hydra.run.dir={name}")[0] == 0
    hits = [read_summary(tmp_path / name)["dense_cache_hit"] for name in "abc"]
    assert hits == [False, True, False]  # a new rewind point trains the dense network again, to take it
    assert _equal(_final_weights(tmp_path / "a"), _final_weights(tmp_path / "b"))
    dense = [torch.load(tmp_path / name / "checkpoints" / "dense.pt") for name in "ac"]
    assert _equal(*dense)  # the same dense weights either way
    assert sorted(p.name for p in (tmp_path / "cache").glob("*step*.pt")) != []


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_reinit_keeps_the_masks_and_draws_new_weights(cli, tmp_path):
    # compact=true: the compact network is drawn afresh in its own shapes
    args = (*[a for a in FAST if a != "compact=false"], "finetune.epochs=0", "prune.epochs=0", "schedule=one_shot",
            "method.sparsity=0.6", "method.granularity=unit")
    for name, extra in (("kept", "finetune.reinit=false"), ("fresh", "finetune.reinit=true"),
                        ("again", "finetune.reinit=true")):
        assert cli(*args, extra, f"hydra.run.dir={name}")[0] == 0
    kept, fresh = _final_weights(tmp_path / "kept"), _final_weights(tmp_path / "fresh")
    assert _equal(fresh, _final_weights(tmp_path / "again"))  # the same seed draws the same weights
    for key in kept:
        if key.endswith("weight_mask"):
            assert torch.equal(kept[key], fresh[key])
        elif key.endswith(".weight"):
            mask = kept[key.replace(".weight", ".weight_mask")]
            assert torch.all(fresh[key][~mask] == 0) and torch.all(fresh[key][mask] != kept[key][mask])


@pytest.mark.parametrize("extra, named", [
    (("prune.rewind_iteration=3",), "prune.rewind_iteration=3"),
    (("prune.rewind=weights", "prune.rewind_iteration=100000", "schedule=one_shot"), "prune.rewind_iteration=100000"),
    (("prune.rewind=lr", "schedule=agp"), "prune.rewind=lr"),
    (("schedule=imp", "schedule.rate=1.0"), "schedule.rate"),
])
def test_a_rewind_the_run_cannot_honour_is_one_line(cli, tmp_path, extra, named):
    code, _, err = cli(*FAST, *extra, "hydra.run.dir=bad")
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.slow
def test_a_resumed_lottery_run_ends_as_an_uninterrupted_one(cli, tmp_path, monkeypatch):
    args = (*FAST, "prune.epochs=1", "schedule=imp", "method.sparsity=0.5",
            "prune.rewind=weights", "prune.rewind_iteration=4", "finetune.reinit=false")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    restore = interrupt_after(monkeypatch, 4)  # after the first epoch of the pruning stage
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")[0] == 0
    assert _equal(_final_weights(tmp_path / "whole"), _final_weights(tmp_path / "broken"))
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    assert whole["accuracy"] == resumed["accuracy"] and whole["density"] == pytest.approx(0.5, abs=1e-3)
    prune = [r for r in read_metrics(tmp_path / "broken") if r.get("stage") == "prune"]
    # rounds at densities 0.8 (the stage's start), 0.64, 0.512, 0.5 (each at the end of an epoch)
    assert [round(r["density"], 3) for r in prune] == [0.64, 0.512, 0.5]
