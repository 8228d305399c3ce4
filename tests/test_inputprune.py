"""method=inputprune: the group-lasso term, exact counts of kept inputs and units, zeros that stay, removal of
the inputs from network and data with the same outputs, and bad input."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.artifacts import load_compact
from prunekit.pruning.methods.inputprune import InputPruneConfig
from prunekit.errors import UserError
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.methods.inputprune import group_norms
from tests.conftest import read_summary


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 3))


def _method(model, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(InputPruneConfig), {"name": "inputprune", **overrides})
    masks = MaskSet(model, (40,))
    return get_method_class("inputprune")(cfg, model, masks, None, 0), masks


def test_the_group_lasso_gradient_equals_finite_differences():
    model = _mlp().double()
    method, _ = _method(model, lam=0.3, lam_units=0.2)
    weight = model[1].weight
    penalty = method.loss(None, None)
    with torch.no_grad():
        expected = 0.3 * weight.norm(dim=0).sum() + 0.2 * (weight.norm(dim=1).sum() + model[3].weight.norm(dim=1).sum())
    assert penalty.item() == pytest.approx(expected.item())
    (grad,) = torch.autograd.grad(penalty, weight)
    step, numeric = 1e-6, torch.zeros_like(weight)
    with torch.no_grad():
        for index in [(0, 0), (5, 7), (29, 39), (12, 3)]:
            original = weight[index].item()
            weight[index] = original + step
            up = method.loss(None, None).item()
            weight[index] = original - step
            down = method.loss(None, None).item()
            weight[index] = original
            numeric[index] = (up - down) / (2 * step)
            assert grad[index].item() == pytest.approx(numeric[index].item(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_inputs_and_units_land_on_exact_counts_along_the_schedule(scope):
    model = _mlp()
    method, masks = _method(model, input_sparsity=0.75, sparsity=0.5, scope=scope, normalize="l2")
    method.prune(0.375)  # halfway along the schedule (it runs to max(0.75, 0.5))
    assert int(masks.groups_alive("input")["1"].sum()) == round(40 * (1 - 0.375))
    method.prune(0.75)
    assert int(masks.groups_alive("input")["1"].sum()) == 10
    units = masks.groups_alive("unit")
    assert sum(int(u.sum()) for u in units.values()) == 25  # half of 30 + 20
    if scope == "layer":
        assert [int(u.sum()) for u in units.values()] == [15, 10]
    # a removed input feature is a whole zero column of the first layer, kept ones have the largest norms
    norms = group_norms(model[1].weight, 1)
    assert int((norms > 0).sum()) == 10


def test_pruned_groups_stay_exactly_zero_through_training():
    model = _mlp()
    method, masks = _method(model, input_sparsity=0.5, sparsity=0.3, lam=0.01, scope="layer")
    method.prune(0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    dead_inputs = ~masks.groups_alive("input")["1"]
    for _ in range(5):
        x, y = torch.randn(16, 40), torch.randint(0, 3, (16,))
        loss = nn.functional.cross_entropy(model(x), y) + method.loss(None, None)
        optimizer.zero_grad()
        loss.backward()
        masks.before_step()
        optimizer.step()
        masks.after_step(0)
    assert bool((model[1].weight[:, dead_inputs] == 0).all())
    assert int((group_norms(model[1].weight, 0) == 0).sum()) == 9  # 30% of fc1's 30 units


@pytest.mark.slow
def test_a_run_removes_the_inputs_from_network_and_data_with_the_same_outputs(cli, tmp_path):
    code, _, err = cli("train", "method=inputprune", "method.input_sparsity=0.75", "method.sparsity=0.5",
                       "method.lam=0.001", "model.hidden=[32,16]", "train.epochs=2", "prune.epochs=2",
                       "finetune.epochs=1", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    summary = read_summary(tmp_path / "run")
    assert summary["inputs_kept_fraction"] == 0.25 and summary["input_sparsity_target"] == 0.75
    assert summary["inputs_kept"] == 16 and len(summary["inputs_kept_mask"]) == 64
    figures = tmp_path / "run" / "figures"
    listed = [int(line.split(",")[0]) for line in (figures / "inputs_kept.csv").read_text().splitlines()[1:]]
    assert listed == [i for i, k in enumerate(summary["inputs_kept_mask"]) if k]
    assert (figures / "inputs_kept.png").stat().st_size > 0
    compact, record = load_compact(tmp_path / "run" / "checkpoints" / "compact.pt")
    kept = record["spec"]["compaction"]["inputs_kept"]
    assert kept == listed and compact[1].in_features == 16 and compact[1].out_features == 16
    full = torch.load(tmp_path / "run" / "checkpoints" / "pruned.pt", weights_only=True)
    masked = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    masked.load_state_dict({k.replace("fc1", "1").replace("fc2", "3").replace("fc3", "5"): v
                            for k, v in full["model"].items() if not k.endswith("_mask")})
    x = torch.randn(50, 1, 8, 8)
    torch.testing.assert_close(compact(x.flatten(1)[:, kept]), masked(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("override,message", [
    ("method.input_sparsity=1.0", "method.input_sparsity=1.0"),
    ("method.lam=-0.1", "method.lam=-0.1"),
    ("method.granularity=unit", "method.granularity"),
])
def test_bad_settings_are_one_line_and_exit_2(cli, tmp_path, override, message):
    code, _, err = cli("train", "method=inputprune", override, "hydra.run.dir=run")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_network_whose_first_layer_is_neither_linear_nor_conv_is_refused():
    model = nn.Sequential(nn.LayerNorm(40), nn.Linear(40, 10), nn.ReLU(), nn.Linear(10, 3))
    with pytest.raises(UserError, match="first layer is LayerNorm"):
        _method(model)


@pytest.mark.parametrize("preset,dataset,model", [
    ("inputprune_mnist", "mnist", "mlp"),  # inputprune_fashion_mnist's baselines have presets (tests/test_presets.py)
    ("inputprune_cifar10", "cifar10", "mlp"), ("inputprune_caltech101", "caltech101", "resnet18"),
])
def test_the_presets_compose_for_the_method_and_its_baselines(preset, dataset, model):
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas
    from prunekit.validation import validate

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        baselines = (["method=magnitude", "method.granularity=unit"], ["method=random", "method.granularity=input"])
        for overrides in ([], *baselines):
            cfg = compose("train", overrides=[f"experiment={preset}", *overrides])
            validate(cfg)
            assert (cfg.data.name, cfg.model.name) == (dataset, model) and cfg.paper.arxiv == "2303.10999"


@pytest.mark.slow
def test_the_kept_features_survive_an_interruption_in_fine_tuning_and_explain(cli, tmp_path, monkeypatch):
    from tests.conftest import interrupt_after

    args = ("train", "method=inputprune", "method.input_sparsity=0.75", "method.lam=0.001", "model.hidden=[32]",
            "train.epochs=1", "prune.epochs=2", "finetune.epochs=2", "latency=false")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    # last.pt: 2 dense (epoch + end) + 3 prune + 1 compact + 1 fine-tuning epoch, then Ctrl-C
    restore = interrupt_after(monkeypatch, 7)
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    assert torch.load(tmp_path / "broken" / "checkpoints" / "last.pt", weights_only=True)["stage"] == "finetune"
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")[0] == 0
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "inputs_kept", "inputs_kept_mask", "params_compact"):
        assert whole[key] == resumed[key], key
    (tmp_path / "broken" / "figures" / "importance.png").unlink()
    code, _, err = cli("explain", "broken")
    assert code == 0, err
    assert read_summary(tmp_path / "broken")["inputs_used"] == 16  # 25% of the 64 pixels
