"""The stages end to end: a structured run ends as a physically smaller network with honest figures; its
checkpoints rebuild narrowed and compacted networks; resume after compaction; explain on narrowed inputs."""
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from conftest import interrupt_after, read_metrics, read_summary
from prunekit.artifacts import load_compact
from prunekit.data import load_dataset
from prunekit.data.view import DataView
from prunekit.engine import evaluate
from prunekit.errors import UserError
from prunekit.explain.command import load_pruned
from prunekit.rundir import RunDir

QUICK = ("train.epochs=3", "prune.epochs=2", "finetune.epochs=2")


@pytest.mark.slow
def test_unit_pruning_ends_as_a_smaller_network_with_its_figures(cli, tmp_path):
    code, out, err = cli("train", "method.granularity=unit", "method.scope=layer", *QUICK, "hydra.run.dir=run")
    assert code == 0, err
    run = tmp_path / "run"
    summary = read_summary(run)
    # unit masks remove whole coupled groups, readers' input columns included: the masked network holds what the
    # compact one keeps
    assert summary["params_compact"] == summary["params_nonzero"] < summary["params_total"]
    assert summary["flops_compact"] < summary["flops_dense"]
    assert set(summary["latency_ms"]) == {"dense", "masked", "compact"}
    assert summary["latency_ratio"] > 0 and "latency_ratio" in out
    assert [r["stage"] for r in read_metrics(run) if r.get("epoch") == 1] == ["dense", "prune", "finetune"]
    assert [r["event"] for r in read_metrics(run) if "event" in r] == ["dense_cache", "pruned", "compacted", "done"]
    # compact.pt reloads through the public loader and scores exactly what the run reported
    model, record = load_compact(run / "checkpoints" / "compact.pt", expect={"dataset": "digits"})
    cfg = OmegaConf.create(torch.load(run / "checkpoints" / "pruned.pt", weights_only=True)["config"])
    full_view = DataView(load_dataset(cfg.data, torch.device("cpu")))
    kept = record["spec"]["compaction"]["inputs_kept"]
    assert evaluate(model, full_view.narrowed(kept, flattened=True), "test", 1024)["accuracy"] == summary["accuracy"]
    # and pruned.pt, the same network in its original shapes, gives the same outputs on the full inputs
    full, _ = load_pruned(RunDir(run))
    x, _ = next(full_view.batches("test", 64, shuffle=False, augment=False))
    with torch.no_grad():
        narrowed = x.flatten(1)[:, kept] if kept is not None else x
        torch.testing.assert_close(full.eval()(x), model(narrowed), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_compact_file_of_another_model_or_dataset_is_refused(cli, tmp_path):
    assert cli("train", "method.granularity=unit", *QUICK, "hydra.run.dir=a")[0] == 0
    assert cli("train", "method.granularity=unit", "model.hidden=[50]", *QUICK, "hydra.run.dir=b")[0] == 0
    shutil.copy(tmp_path / "a" / "checkpoints" / "compact.pt", tmp_path / "b" / "checkpoints" / "compact.pt")
    code, _, err = cli("explain", "b")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "compact.pt" in err and "model" in err
    with pytest.raises(UserError, match="dataset"):
        load_compact(tmp_path / "a" / "checkpoints" / "compact.pt", expect={"dataset": "mnist"})
    (tmp_path / "a" / "checkpoints" / "compact.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="compact.pt"):
        load_compact(tmp_path / "a" / "checkpoints" / "compact.pt")


@pytest.mark.slow
def test_a_run_interrupted_after_compaction_resumes_to_the_same_result(cli, tmp_path, monkeypatch):
    args = ("train", "method.granularity=input", "method.sparsity=0.5", "train.epochs=2", "prune.epochs=2",
            "finetune.epochs=2")
    assert cli(*args, "hydra.run.dir=whole", f"cache_dir={tmp_path}/c1")[0] == 0
    # last.pt is written after each epoch and at the end of each stage: 3 dense + 3 prune + 1 compact
    restore = interrupt_after(monkeypatch, 7)
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2")[0] == 130
    restore()
    assert torch.load(tmp_path / "broken" / "checkpoints" / "last.pt", weights_only=True)["stage"] == "compact"
    assert cli(*args, "hydra.run.dir=broken", f"cache_dir={tmp_path}/c2", "resume=true")[0] == 0
    whole, resumed = read_summary(tmp_path / "whole"), read_summary(tmp_path / "broken")
    for key in ("accuracy", "loss", "val_accuracy", "density", "params_compact", "inputs_kept_fraction"):
        assert whole[key] == resumed[key], key
    assert whole["inputs_kept_fraction"] == 0.5


@pytest.mark.slow
def test_explain_works_on_a_run_whose_inputs_were_narrowed(cli, tmp_path):
    assert cli("train", "method.granularity=input", "method.sparsity=0.75", *QUICK, "hydra.run.dir=run")[0] == 0
    shutil.rmtree(tmp_path / "run" / "figures")
    code, _, err = cli("explain", "run")
    assert code == 0, err
    assert (tmp_path / "run" / "figures" / "importance.png").stat().st_size > 0
    assert read_summary(tmp_path / "run")["inputs_used"] <= 16  # 25% of the 64 pixels are still fed


@pytest.mark.slow
def test_compaction_latency_and_figures_can_be_switched_off(cli, tmp_path):
    assert cli("train", "method.granularity=unit", *QUICK, "compact=false", "latency=false", "figures=false",
               "hydra.run.dir=r")[0] == 0
    summary = read_summary(tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoints" / "compact.pt").exists()
    assert "params_compact" not in summary and not any(k.startswith("latency") for k in summary)
    assert not list((tmp_path / "r" / "figures").iterdir()) and "inputs_used" not in summary


@pytest.mark.slow
def test_a_learning_rate_cycle_needs_a_stepped_schedule(cli, tmp_path):
    code, _, err = cli("train", "prune.lr_schedule=cycle")
    assert code == 2 and "schedule=iterative" in err
    code, _, err = cli("train", "finetune.lr_schedule=cycle")
    assert code == 2 and "finetune.lr_schedule" in err
    code, _, err = cli("train", "prune.lr_schedule=cycle", "schedule=iterative", "schedule.steps=2", *QUICK,
                       "hydra.run.dir=r")
    assert code == 0, err


@pytest.mark.slow
def test_the_schedule_scores_the_masked_network_as_it_is(cli, monkeypatch):
    """Momentum keeps moving a pruned weight at every step until the masks re-zero it: a pruning step that scored
    before that would see weights and units that the masked network does not have."""
    from prunekit.pruning.criteria import ScoredPruning

    seen = []
    scores = ScoredPruning.scores

    def checked(self):
        seen.append(all(bool((layer.weight[~layer.weight_mask] == 0).all()) for layer in self.masks.layers.values()))
        return scores(self)

    monkeypatch.setattr(ScoredPruning, "scores", checked)
    code, _, err = cli("train", "method=taylor", "prune.epochs=2", "schedule.frequency=2", "train.epochs=1",
                       "finetune.epochs=0", "figures=false", "latency=false", "hydra.run.dir=run")
    assert code == 0, err
    assert len(seen) > 2 and all(seen)
