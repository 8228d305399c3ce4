"""The response-based unit criteria (taylor, gradient; lrp's relevance core has tests/test_relevance.py): what
they compute, what they leave alone, the reference samples, per-layer normalisation and the paper's procedures."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunekit.config import MethodConfig, ScheduleConfig
from prunekit.pruning.criteria.lrp import LRPConfig
from prunekit.errors import UserError
from prunekit.pruning.masks import MaskSet
from prunekit.pruning.methods import get_method_class
from prunekit.pruning.selection import normalised
from prunekit.pruning.reference import reference_index
from prunekit.pruning.schedules import ScheduledPruning, levels_without_training
from prunekit.pruning.units import unit_outputs
from tests.conftest import read_summary, toy_images as _data


def _cnn(widths=(6, 5, 7)):
    torch.manual_seed(0)
    first, second, hidden = widths
    model = nn.Sequential(
        nn.Conv2d(1, first, 3, padding=1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True),
        nn.Conv2d(first, second, 3, padding=1, bias=False), nn.BatchNorm2d(second), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(second * 6 * 6, hidden), nn.ReLU(), nn.Linear(hidden, 3),
    )
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model(torch.randn(16, 1, 6, 6) * 2 + 1)
    return model.eval()


def _method(name, model, data, seed=0, **overrides):
    schema = LRPConfig if name == "lrp" else MethodConfig
    cfg = OmegaConf.merge(OmegaConf.structured(schema), {"name": name, "granularity": "unit", **overrides})
    masks = MaskSet(model, data.dataset.input_shape)
    return get_method_class(name)(cfg, model, masks, data, seed), masks


@pytest.mark.parametrize("name", ["lrp", "taylor", "gradient"])
def test_scores_have_one_finite_value_per_unit_of_every_layer_but_the_classifier(name):
    model, data = _cnn(), _data()
    method, _ = _method(name, model, data, samples_per_class=4)
    scores = method.scores()
    assert {n: tuple(s.shape) for n, s in scores.items()} == {"0": (6,), "3": (5,), "7": (7,)}
    assert all(bool(torch.isfinite(s).all()) and bool((s >= 0).all()) for s in scores.values())


def _by_hand(model, x, y, term):
    """The criterion per unit from one sample at a time, with gradients from torch.autograd.functional."""
    outputs = unit_outputs(model)
    totals = {}
    for sample, label in zip(x, y):
        acts = {}
        handles = [m.register_forward_hook(lambda mod, a, out, n=n: acts.__setitem__(n, out) or out.clone())
                   for n, m in outputs.items()]
        loss = nn.functional.cross_entropy(model(sample[None]), label[None])
        for handle in handles:
            handle.remove()
        grads = torch.autograd.grad(loss, list(acts.values()))
        for (n, a), g in zip(acts.items(), grads):
            dims = [d for d in range(a.dim()) if d != 1]
            totals[n] = totals.get(n, 0) + term(a.detach(), g).sum(dims)
    positions = {n: acts[n][0, 0].numel() for n in acts}
    return {n: t.abs() / (len(y) * positions[n]) for n, t in totals.items()}


@pytest.mark.parametrize("name,term", [("taylor", lambda a, g: a * g), ("gradient", lambda a, g: g)])
def test_scores_equal_the_formula_computed_one_sample_at_a_time(name, term):
    model, data = _cnn(), _data()
    method, _ = _method(name, model, data, samples_per_class=5, score_batch_size=4)  # several batches
    x, y = next(data.samples("train", method.context.reference, 1000))
    expected = _by_hand(model, x, y, term)
    for layer, score in method.scores().items():
        torch.testing.assert_close(score, expected[layer], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["lrp", "taylor", "gradient"])
def test_scoring_touches_neither_weights_nor_masks_nor_gradients_nor_the_mode(name):
    model, data = _cnn(), _data()
    method, masks = _method(name, model, data, samples_per_class=4)
    method.prune(0.4)  # some filters pruned
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = method.scores()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.training for m in model.modules())
    assert all(bool(torch.isfinite(s).all()) for s in scores.values())


def test_reference_samples_are_k_per_class_drawn_with_the_seed():
    labels = torch.arange(4).repeat_interleave(10)
    index = reference_index(labels, 3, seed=0)
    assert torch.bincount(labels[index]).tolist() == [3, 3, 3, 3]
    assert torch.equal(index, reference_index(labels, 3, seed=0))
    assert not torch.equal(index, reference_index(labels, 3, seed=1))
    assert torch.equal(reference_index(labels, None, seed=0), torch.arange(40))
    with pytest.raises(UserError, match="samples_per_class=11"):
        reference_index(labels, 11, seed=0)


def test_normalisation_per_layer():
    scores = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([1.0, 1.0, 2.0]), "c": torch.zeros(2)}
    l2, total = normalised(scores, "l2"), normalised(scores, "sum")
    assert torch.allclose(l2["a"], torch.tensor([0.6, 0.8])) and torch.allclose(l2["b"].norm(), torch.tensor(1.0))
    assert torch.allclose(total["b"], torch.tensor([0.25, 0.25, 0.5]))
    assert torch.equal(l2["c"], torch.zeros(2)) and torch.equal(total["c"], torch.zeros(2))
    assert normalised(scores, "none") is scores


def _units_alive(masks):
    return sum(int(a.sum()) for a in masks.groups_alive("unit").values())


def test_the_iterative_procedure_removes_five_percent_of_the_original_filters_per_step():
    """The preset's schedule: 5% at the start, then five more steps of 5% each, fine-tuning between them."""
    model, data = _cnn(widths=(16, 16, 8)), _data()  # 40 units: 2 of them are 5%
    method, masks = _method("taylor", model, data, samples_per_class=4, normalize="l2", scope="global")
    schedule = OmegaConf.merge(OmegaConf.structured(ScheduleConfig),
                               {"name": "iterative", "initial_sparsity": 0.05, "steps": 5, "end": 5 / 6,
                                "frequency": 1})
    total_units = _units_alive(masks)
    pruner, seen = ScheduledPruning(method, schedule, 0.30, total_steps=60), []
    pruner.start()
    seen.append(_units_alive(masks))
    for step in range(1, 61):
        pruner.after_step(step)
        if _units_alive(masks) != seen[-1]:
            seen.append(_units_alive(masks))
    assert seen == [total_units - 2 * k for k in range(1, 7)]


def test_pruning_without_training_steps_through_the_schedule():
    one_shot = OmegaConf.merge(OmegaConf.structured(ScheduleConfig), {"name": "one_shot"})
    iterative = OmegaConf.merge(OmegaConf.structured(ScheduleConfig), {"name": "iterative", "steps": 4, "end": 1.0})
    assert levels_without_training(one_shot, 0.5) == [0.5]
    assert levels_without_training(iterative, 0.8) == pytest.approx([0.2, 0.4, 0.6, 0.8])


@pytest.mark.slow
def test_a_run_without_fine_tuning_rescores_at_every_step(cli, tmp_path, monkeypatch):
    from prunekit.pruning.criteria import first_order as criterion

    calls = []
    original = criterion.first_order
    monkeypatch.setattr(criterion, "first_order", lambda *args: calls.append(1) or original(*args))
    code, _, err = cli("train", "model=cnn", "model.blocks=[[8],[8]]", "model.hidden=16", "method=taylor",
                       "method.samples_per_class=5", "train.epochs=1", "prune.epochs=0", "finetune.epochs=0",
                       "schedule=iterative", "schedule.steps=3", "method.sparsity=0.6", "figures=false",
                       "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    assert len(calls) == 3
    assert read_summary(tmp_path / "run")["method"] == "taylor"


@pytest.mark.slow
def test_an_lrp_run_draws_units_kept_and_relevance_maps(cli, tmp_path):
    code, _, err = cli("train", "model=cnn", "model.blocks=[[8],[8]]", "model.hidden=16", "method=lrp",
                       "method.samples_per_class=5", "method.sparsity=0.5", "train.epochs=1", "prune.epochs=0",
                       "finetune.epochs=0", "schedule=one_shot", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    summary = read_summary(tmp_path / "run")
    assert summary["units_kept"] == {"features.0": [summary["units_kept"]["features.0"][0], 8],
                                     "features.4": [summary["units_kept"]["features.4"][0], 8],
                                     "fc": [summary["units_kept"]["fc"][0], 16]}
    assert sum(kept for kept, _ in summary["units_kept"].values()) == 16  # half of the 32 units, counted globally
    assert (tmp_path / "run" / "figures" / "units_kept.png").stat().st_size > 0
    assert (tmp_path / "run" / "figures" / "relevance_maps.png").stat().st_size > 0


@pytest.mark.parametrize("method,override,message", [
    ("lrp", "method.granularity=weight", "method.granularity"),
    ("taylor", "method.normalize=max", "method.normalize"),
    ("lrp", "method.composite=alpha", "method.composite"),
    ("lrp", "method.samples_per_class=1000", "samples_per_class=1000"),
])
def test_bad_criterion_settings_are_one_line_and_exit_2(cli, tmp_path, method, override, message):
    code, _, err = cli("train", "model=cnn", "model.blocks=[[8]]", "model.hidden=8", f"method={method}",
                       "train.epochs=1", override, "hydra.run.dir=run")
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_network_nothing_trains_or_loads_is_refused(cli, tmp_path):
    code, _, err = cli("train", "method=lrp", "train.epochs=0", "prune.epochs=0", "finetune.epochs=0",
                       "hydra.run.dir=run")
    assert code == 2 and "nothing trains this network" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["lrp_cifar10", "lrp_scarce", "lrp_fashion_mnist", "lrp_fashion_mnist_finetune"])
def test_the_lrp_presets_compose_for_every_criterion_and_step_by_five_percent(preset, tmp_path):
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas
    from prunekit.pruning.schedules import sparsity_at
    from prunekit.validation import validate

    register_schemas()
    criteria = [["method=lrp"], ["method=taylor"], ["method=gradient"], ["method=random"],
                ["method=magnitude", "method.normalize=l2"]]
    (tmp_path / "dense.pt").touch()
    weights = [f"model.weights={tmp_path / 'dense.pt'}"] if "fashion" in preset else []  # the others: pretrained
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        for overrides in criteria:
            cfg = compose("train", overrides=[f"experiment={preset}", *weights, *overrides])
            validate(cfg)
            assert cfg.method.granularity == "unit" and cfg.method.scope == "global"
            assert cfg.paper.get("table") or preset == "lrp_fashion_mnist_finetune"
    if cfg.schedule.name == "iterative":  # the fine-tuned procedure: six steps of 5% of the original filters
        levels = sorted({round(sparsity_at(cfg.schedule, cfg.method.sparsity, t / 600), 9) for t in range(601)})
        assert levels == pytest.approx([0.05, 0.10, 0.15, 0.20, 0.25, 0.30])
