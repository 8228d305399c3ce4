"""Method config files configure only their method: every method composes with the same stage settings, so
`prunekit train -m method=a,b` compares the methods under one training budget; options a run would not read
are refused; unit pruning's default ranking keeps every layer."""
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from prunekit.catalog import catalog
from prunekit.config import config_dir, register_schemas
from prunekit.validation import validate
from conftest import read_summary

STAGE_NODES = ("train", "prune", "finetune", "schedule")
METHODS = [name for name, _ in catalog()["method"]]


def _compose(*overrides: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose("train", overrides=list(overrides))


def test_every_method_composes_with_the_default_budget():
    default = _compose()
    reference = {node: OmegaConf.to_container(default[node]) for node in STAGE_NODES}
    assert len(METHODS) >= 8
    for method in METHODS:
        cfg = _compose(f"method={method}")
        assert cfg.method.name == method
        for node in STAGE_NODES:
            assert OmegaConf.to_container(cfg[node]) == reference[node], (method, node)
        assert set(cfg) == set(default), method  # a method file adds no top-level node either


@pytest.mark.parametrize("args, named", [
    (["method=gumbel", "method.normalize=l2"], "method.normalize"),
    (["method=gumbel", "method.target=emergent", "method.scope=layer"], "method.scope"),
    (["method=magnitude", "method.samples_per_class=10"], "method.samples_per_class"),
    (["method=random", "method.score_batch_size=64"], "method.score_batch_size"),
    (["method=inputprune", "method.samples_per_class=10"], "method.samples_per_class"),
    (["method=crespr", "method.hessian_probes=4"], "method.hessian_probes"),
    (["method=crespr", "method.criterion=obd", "method.hessian_probes=4"], "method.hessian_probes"),
    (["method=magnitude", "method.granularity=block"], "method.granularity"),
])
def test_an_option_the_run_does_not_read_is_refused(cli, tmp_path, args, named):
    code, out, err = cli("train", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], err
    assert "Traceback" not in out + err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args", [
    ["method=crespr", "method.criterion=obd", "method.hessian=hutchinson", "method.hessian_probes=4"],
    ["method=lrp", "method.samples_per_class=10"],
    ["method=gumbel", "method.scope=layer"],
    ["method=magnitude", "method.normalize=l2"],
])
def test_an_option_the_run_reads_is_accepted(args):
    validate(_compose(*args), frozenset(a.split("=")[0] for a in args))


def test_a_preset_may_set_an_option_that_one_of_its_methods_does_not_read(monkeypatch):
    monkeypatch.setattr("prunekit.models.weights.check_request", lambda model: None)  # no dense.pt needed here
    # lrp_fashion_mnist sets method.samples_per_class for its criteria; method=random runs on it as the floor.
    args = ["experiment=lrp_fashion_mnist", "method=random", "model.weights=dense.pt"]
    cfg = _compose(*args)
    assert cfg.method.samples_per_class == 10
    validate(cfg, frozenset(a.split("=")[0] for a in args))


def _units_per_layer(run_dir):
    import csv

    rows = list(csv.DictReader((run_dir / "layers.csv").open()))
    # compact_shape is "out x in [x kh x kw]": the units (neurons, filters) each layer kept after compaction
    return {row["layer"]: (int(row["shape"].split("x")[0]), int(row["compact_shape"].split("x")[0])) for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("model, sparsity, epochs, floor", [
    (["model=mlp"], 0.9, ["train.epochs=10", "prune.epochs=3", "finetune.epochs=3"], 0.8),
    (["model=vgg16"], 0.5, ["train.epochs=6", "prune.epochs=2", "finetune.epochs=2"], 0.5),
])
def test_unit_pruning_by_default_keeps_every_layer_usable(cli, tmp_path, model, sparsity, epochs, floor):
    # A global ranking of raw L1 norms emptied layers here: the MLP fell to 33% accuracy at 90% of its units and
    # VGG16-small kept 1 of its first convolution's 64 filters at 50%. The default scope for units is per layer.
    code, _, err = cli("train", *model, "method=magnitude", "method.granularity=unit", f"method.sparsity={sparsity}",
                       *epochs, "figures=false", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    summary = read_summary(tmp_path / "run")
    assert summary["accuracy"] >= floor, summary["accuracy"]  # chance is 0.1 on digits
    units = _units_per_layer(tmp_path / "run")
    *hidden, (classes, kept_classes) = units.values()
    assert kept_classes == classes
    for name, (total, kept) in zip(units, hidden):
        assert kept == round((1 - sparsity) * total), (name, total, kept)


@pytest.mark.parametrize("args, named", [
    (["method.min_keep=1000000000"], "method.min_keep=1e+09"),  # every layer's floor is all of it: no pruning at all
    (["method.min_keep=0.12"], "method.min_keep=0.12"),  # floors keep 6,024 weights where 90% sparsity leaves 5,020
    (["method=inputprune", "model=cnn"], "method=inputprune"),  # a grey image has one input channel to remove
])
def test_a_target_the_network_cannot_honour_is_refused_before_training(cli, tmp_path, args, named):
    code, out, err = cli("train", *args, "hydra.run.dir=run")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*.pt"))  # nothing trained


@pytest.mark.slow
def test_floors_that_bend_the_target_slightly_keep_it_with_a_warning(cli, tmp_path):
    code, _, err = cli("train", "method.min_keep=0.105", "train.epochs=1", "prune.epochs=1", "finetune.epochs=0",
                       "figures=false", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    assert "the floors win" in err  # 5,271 weights kept where 90% sparsity alone leaves 5,020
    assert read_summary(tmp_path / "run")["density"] == pytest.approx(5271 / 50200)


@pytest.mark.slow
def test_divergence_names_the_option_to_lower(cli):
    code, _, err = cli("train", "train.lr=1e8", "train.epochs=2", "hydra.run.dir=run")
    assert code == 2 and "the dense stage diverged" in err and "(train.lr=100000000.0)" in err, err
