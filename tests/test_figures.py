"""The figures and measures registry (prunekit/explain/registry.py): `prunekit explain` after figures=false draws
exactly what a run with figures=true draws, for every method and the granularities and models that draw
different figures; a figure or measure applies by its registration; explain/ imports nothing above it."""
import ast
import pathlib

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import prunekit
from conftest import read_summary
from prunekit.explain import registry
from prunekit.explain.registry import FinishedRun, draw_figures, measures
from prunekit.registry import Registry
from prunekit.rundir import RunDir

TINY = ("train.epochs=1", "prune.epochs=1", "finetune.epochs=0", "latency=false")
MLP = ("model.hidden=[16]",)
CNN = ("model=cnn", "model.blocks=[[4],[8]]", "model.hidden=16")
VOLATILE = {"seconds", "dense_cache_hit"}  # the second run reuses the first one's dense network
PATHS = {"importance.csv", "importance.png", "symmetry.png", "pathways.png"}  # every MLP's (prunekit/explain/mlp.py)
CASES = {  # name: (overrides, the figure files the run draws): every method, every figure, on small networks
    "magnitude-cnn-unit": (("method=magnitude", "method.granularity=unit", *CNN), {"units_kept.png"}),
    "random-cnn": (("method=random", *CNN), set()),
    "lrp-mlp": (("method=lrp", "method.sparsity=0.5", "method.samples_per_class=2", *MLP),
                PATHS | {"units_kept.png", "relevance_maps.png"}),
    "lrp-cnn": (("method=lrp", "method.sparsity=0.5", "method.samples_per_class=2", *CNN),
                {"units_kept.png", "relevance_maps.png"}),
    "taylor-cnn": (("method=taylor", "method.sparsity=0.5", "method.samples_per_class=2", *CNN), {"units_kept.png"}),
    "gradient-cnn": (("method=gradient", "method.sparsity=0.5", "method.samples_per_class=2", *CNN),
                     {"units_kept.png"}),
    "gumbel-cnn": (("method=gumbel", "method.sparsity=0.9", *CNN), set()),
    "inputprune-mlp": (("method=inputprune", *MLP), PATHS | {"inputs_kept.csv", "inputs_kept.png"}),
    "crespr-mlp": (("method=crespr", "method.sparsity=0.9", *MLP),
                   PATHS | {"modules_inputs.png", "modules_classes.png", "modules_weights.png"}),
    "crespr-cnn": (("method=crespr", "method.sparsity=0.9", *CNN), {"modules_classes.png", "modules_weights.png"}),
}


def _figures(run: pathlib.Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (run / "figures").iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_explain_after_figures_false_draws_what_figures_true_draws(cli, tmp_path, case):
    overrides, files = CASES[case]
    assert cli("train", *TINY, *overrides, "hydra.run.dir=drawn")[0] == 0
    assert cli("train", *TINY, *overrides, "figures=false", "hydra.run.dir=later")[0] == 0
    assert _figures(tmp_path / "later") == {}
    code, out, err = cli("explain", "later")
    assert code == 0, err
    drawn, later = _figures(tmp_path / "drawn"), _figures(tmp_path / "later")
    assert set(drawn) == set(later) == files
    # the same data (tables) and the same pictures, byte for byte: nothing was drawn from another network or sample
    assert drawn == later
    summary_drawn, summary_later = read_summary(tmp_path / "drawn"), read_summary(tmp_path / "later")
    assert {k: v for k, v in summary_drawn.items() if k not in VOLATILE} == \
           {k: v for k, v in summary_later.items() if k not in VOLATILE}
    assert ("no figure applies" in out) == (not files)


def _finished(model: nn.Module, input_shape: tuple[int, ...], method: dict, tmp_path) -> FinishedRun:
    cfg = OmegaConf.create({"method": {"name": "magnitude", "granularity": "weight", **method}, "seed": 0})
    return FinishedRun(model, input_shape, cfg, RunDir(tmp_path), lambda: pytest.fail("no figure here reads data"))


def test_a_figure_applies_by_its_methods_and_predicate(tmp_path, monkeypatch):
    monkeypatch.setattr("prunekit.registry.REGISTRIES", [])  # these registries stay out of `prunekit list`
    monkeypatch.setattr(registry, "FIGURES", Registry("figure", "figures"))
    monkeypatch.setattr(registry, "MEASURES", Registry("measure", "measures"))

    @registry.register_figure("mine", methods=("mine",))
    def mine(run, out_dir):
        (out_dir / "mine.txt").write_text(run.method)
        return {"mine": 1}

    @registry.register_figure("wide", applies=lambda run: run.cfg.method.granularity == "unit")
    def wide(run, out_dir):
        return {"wide": run.is_mlp}

    @registry.register_measure("count", applies=lambda run: run.is_mlp)
    def count(run):
        return {"count": sum(p.numel() for p in run.model.parameters())}

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3))
    assert draw_figures(_finished(mlp, (1, 4, 4), {}, tmp_path), tmp_path) == {}
    assert draw_figures(_finished(mlp, (1, 4, 4), {"granularity": "unit"}, tmp_path), tmp_path) == {"wide": True}
    assert draw_figures(_finished(mlp, (1, 4, 4), {"name": "mine"}, tmp_path), tmp_path) == {"mine": 1}
    assert (tmp_path / "mine.txt").read_text() == "mine"
    assert measures(_finished(mlp, (1, 4, 4), {}, tmp_path)) == {"count": 16 * 6 + 6 + 6 * 3 + 3}


def test_a_unit_pruned_cnn_gets_units_kept_and_no_mlp_figure_or_measure(tmp_path):
    """prunekit's own registrations on a hand-built network, with no run directory behind it."""
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    with torch.no_grad():
        cnn[0].weight[:1] = 0  # one of the four filters pruned
    run = _finished(cnn, (1, 4, 4), {"granularity": "unit"}, tmp_path)
    assert draw_figures(run, tmp_path) == {"units_kept": {"0": [3, 4]}}
    assert [p.name for p in tmp_path.iterdir()] == ["units_kept.png"]
    assert measures(run) == {}


def test_explain_imports_nothing_above_it():
    """explain/ is below the methods, the stages and the launch code: none of them may be imported from it (the
    evaluate stage imports explain, and a method never draws), so no package-level import circle runs through it."""
    above = ("prunekit.pruning.method", "prunekit.pruning.methods", "prunekit.pruning.criteria", "prunekit.stages",
             "prunekit.pipeline", "prunekit.cli", "prunekit.job")
    root = pathlib.Path(prunekit.__file__).parent / "explain"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(above), f"{path.name} imports {name}"
