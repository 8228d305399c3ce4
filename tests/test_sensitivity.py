"""prunekit sensitivity: every coupled group pruned alone at each ratio and measured on validation, the folder it
writes into, the ratios it turns the curves into for a budget, and what it refuses."""
import csv
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from prunekit import checkpoints, metrics
from prunekit.data import load_dataset
from prunekit.data.view import DataView
from prunekit.pruning.allocation import Allocation
from prunekit.pruning.masks import MaskSet
from prunekit.sensitivity.analysis import Point, Sensitivity
from prunekit.sensitivity.allocation import ratios_at
from prunekit.state import ModelSpec
from conftest import read_summary

RUN = ("dataset=digits", "model=mlp", "model.hidden=[24,16]", "method=taylor", "method.samples_per_class=5")


def write_run(root: Path, overrides: tuple[str, ...] = RUN) -> Path:
    """A run folder as `prunekit train` leaves it once its dense stage is done (.hydra/config.yaml and
    checkpoints/dense.pt), with an untrained network: what sensitivity reads, without the training."""
    from hydra import compose, initialize_config_dir

    from prunekit.config import config_dir, register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="test"):
        cfg = compose("train", overrides=list(overrides))
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    data = DataView(load_dataset(cfg.data, torch.device("cpu"), cfg.seed))
    torch.manual_seed(0)
    spec = ModelSpec(OmegaConf.to_container(cfg.model, resolve=True), data.input_shape, data.num_classes)
    (root / "checkpoints").mkdir()
    checkpoints.save_dense(root / "checkpoints" / "dense.pt", spec.build(torch.device("cpu")).state_dict())
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("sensitivity") / "run")


def rows(folder: Path) -> list[dict]:
    with open(folder / "sensitivity.csv") as handle:
        return list(csv.DictReader(handle))


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def dense_masks(run: Path) -> tuple[MaskSet, tuple[int, ...]]:
    """A fresh network of the model of ``run`` with its masks, and the input shape."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    data = DataView(load_dataset(cfg.data, torch.device("cpu"), cfg.seed))
    model = ModelSpec(OmegaConf.to_container(cfg.model, resolve=True), data.input_shape,
                      data.num_classes).build(torch.device("cpu"))
    return MaskSet(model, data.input_shape), data.input_shape


def pruned_fraction(run: Path, layer_sparsity: Path, kind: str) -> float:
    """The fraction of the dense FLOPs or parameters the network of ``run`` keeps once pruned to the ratios of
    ``layer_sparsity`` by the allocation a run uses, as summary.json counts it."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    masks, shape = dense_masks(run)
    method = OmegaConf.merge(cfg.method, {"layer_sparsity": str(layer_sparsity)})
    ratios = yaml.safe_load(layer_sparsity.read_text())
    scores = {name: torch.rand(alive.shape) for name, alive in masks.groups_alive("unit").items()}
    Allocation(method, masks).prune("unit", scores, max(ratios.values()))
    counts, _ = metrics.measure(masks.model, shape)
    return counts[f"{kind}_effective"] / counts[f"{kind}_dense" if kind == "flops" else "params_total"]


def test_the_allowed_drop_gives_each_group_its_largest_ratio_within_it():
    points = [Point("a", ("a",), 10, r, 0, acc, 1.0, 1.0) for r, acc in ((0.2, 0.9), (0.4, 0.7), (0.6, 0.85))]
    points += [Point("b", ("b",), 10, r, 0, acc, 1.0, 1.0) for r, acc in ((0.2, 0.6), (0.4, 0.5), (0.6, 0.4))]
    curves = Sensitivity(0.9, (0.2, 0.4, 0.6), points)
    assert ratios_at(curves, 0.0) == {"a": 0.2, "b": 0.0}
    assert ratios_at(curves, 0.1) == {"a": 0.6, "b": 0.0}  # the largest within the drop, past a deeper dip
    assert ratios_at(curves, 0.5) == {"a": 0.6, "b": 0.6}


def test_every_group_is_measured_at_every_ratio(cli, run_dir, tmp_path):
    code, out, err = cli("sensitivity", str(run_dir), "--ratios", "0.75,0.25,0.5", "--out", str(tmp_path / "out"))
    assert code == 0, err
    table = rows(tmp_path / "out")
    groups = dense_masks(run_dir)[0].channel_groups()
    assert [(r["group"], float(r["ratio"])) for r in table] == [(g.name, r) for g in groups for r in (0.25, 0.5, 0.75)]
    for group in groups:
        mine = [r for r in table if r["group"] == group.name]
        assert all(0 <= float(r["val_accuracy"]) <= 1 for r in mine)
        assert [int(r["kept"]) for r in mine] == [round((1 - r) * group.size) for r in (0.25, 0.5, 0.75)]
        for kind in ("flops_fraction", "params_fraction"):
            fractions = [float(r[kind]) for r in mine]
            assert 1 > fractions[0] > fractions[1] > fractions[2] > 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        ".prunekit-sensitivity", "sensitivity.csv", "sensitivity.md", "sensitivity.png"}
    assert "wrote sensitivity.csv, sensitivity.md, sensitivity.png" in out


@pytest.mark.slow
@pytest.mark.parametrize("kind, target", [("flops", 0.6), ("params", 0.7)])
def test_the_ratios_written_meet_the_budget(cli, run_dir, tmp_path, kind, target):
    code, out, err = cli("sensitivity", str(run_dir), "--ratios", "0.2,0.4,0.6,0.8", f"--target-{kind}",
                         str(target), "--method", "magnitude", "--out", str(tmp_path / "out"))
    assert code == 0, err
    written = tmp_path / "out" / "layer_sparsity.yaml"
    ratios = yaml.safe_load(written.read_text())
    assert set(ratios) == {r["group"] for r in rows(tmp_path / "out")}
    assert set(ratios.values()) <= {0.0, 0.2, 0.4, 0.6, 0.8}
    assert pruned_fraction(run_dir, written, kind) <= target
    assert f"method.layer_sparsity={written}" in out


@pytest.mark.slow
def test_a_second_analysis_rewrites_its_own_folder(cli, run_dir, tmp_path):
    out = tmp_path / "out"
    assert cli("sensitivity", str(run_dir), "--ratios", "0.5", "--target-flops", "0.9", "--out", str(out))[0] == 0
    code, _, err = cli("sensitivity", str(run_dir), "--ratios", "0.3,0.6", "--out", str(out))
    assert code == 0, err
    assert {float(r["ratio"]) for r in rows(out)} == {0.3, 0.6}
    assert not (out / "layer_sparsity.yaml").exists()  # its ratios came from the first curves


@pytest.mark.slow
def test_a_budget_the_curves_cannot_meet_is_one_line_and_no_ratios(cli, run_dir, tmp_path):
    err = one_line_error(*cli("sensitivity", str(run_dir), "--ratios", "0.1", "--target-flops", "0.2",
                              "--out", str(tmp_path / "out")))
    assert "--target-flops=0.2 cannot be met" in err and "every group at its largest ratio (0.1) keeps 0.8" in err
    assert (tmp_path / "out" / "sensitivity.csv").is_file() and not (tmp_path / "out" / "layer_sparsity.yaml").exists()


def test_a_folder_of_the_users_is_refused_and_left_as_it_was(cli, run_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    err = one_line_error(*cli("sensitivity", str(run_dir), "--out", str(tmp_path / "mine")))
    assert "was not made by prunekit sensitivity" in err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (("--method", "gumbel"), "method gumbel is a training-time method"),
    (("--method", "nonesuch"), "method='nonesuch' is unknown"),
    (("--ratios", "0.5,1"), "--ratios '1' is not allowed"),
    (("--target-flops", "0.5", "--target-params", "0.5"), "not allowed with argument"),
])
def test_what_cannot_be_analysed_is_one_line(cli, run_dir, tmp_path, args, message):
    err = one_line_error(*cli("sensitivity", str(run_dir), *args, "--out", str(tmp_path / "out")))
    assert message in err
    assert not (tmp_path / "out").exists()


def test_a_run_pruning_weights_or_a_folder_of_no_run_is_one_line(cli, tmp_path):
    weights = write_run(tmp_path / "weights", (*RUN[:3], "method=magnitude"))
    assert "prunes at granularity weight" in one_line_error(*cli("sensitivity", str(weights)))
    (tmp_path / "empty").mkdir()
    assert "is not a prunekit run" in one_line_error(*cli("sensitivity", str(tmp_path / "empty")))


@pytest.mark.slow
def test_a_trained_run_pruned_to_the_ratios_lands_on_the_budget(cli, tmp_path):
    """End to end: train, analyse with the run's criterion, train again with the ratios written."""
    quick = ("dataset=digits", "model=cnn", "method=taylor", "method.samples_per_class=5", "train.epochs=1",
             "prune.epochs=0", "finetune.epochs=0", "figures=false", "latency=false")
    assert cli("train", *quick, "hydra.run.dir=dense")[0] == 0
    code, out, err = cli("sensitivity", "dense", "--ratios", "0.3,0.6,0.9", "--target-flops", "0.5")
    assert code == 0, err
    written = tmp_path / "dense" / "sensitivity" / "layer_sparsity.yaml"
    assert cli("train", *quick, f"method.layer_sparsity={written}", "hydra.run.dir=pruned")[0] == 0
    summary = read_summary(tmp_path / "pruned")
    assert summary["flops_fraction"] <= 0.5
    assert f"keeps {summary['flops_fraction']:.4f} of the FLOPs" in out
