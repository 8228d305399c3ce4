"""`prunekit study`: the search at the search seed, the choice on validation, the replicates, study.json and the
table; a second run of the same command starts nothing; bad study files are one line before anything runs."""
from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from conftest import read_summary
from prunekit.pipeline import Run

STUDY = """\
base: [dataset=digits, "model.hidden=[32]", train.epochs=2, prune.epochs=1, finetune.epochs=1, figures=false,
       latency=false]
grid: {method.sparsity: [0.8]}
arms:
  magnitude: {set: [method=magnitude], search: {prune.lr: [0.001, 0.05]}}
  random:    {set: [method=random],    search: {prune.lr: [0.001, 0.05]}}
search_seed: 0
seeds: [0, 1, 2]
select: val_accuracy
"""


def write_study(tmp_path: Path, text: str = STUDY, name: str = "small") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def counted_runs(monkeypatch):
    """The runs a command starts, counted where every run starts (Run.execute)."""
    started = []
    original = Run.execute
    monkeypatch.setattr(Run, "execute", lambda self: started.append(self) or original(self))
    return started


@pytest.mark.slow
def test_a_study_chooses_on_validation_and_reports_the_chosen_settings_seeds(cli, tmp_path, counted_runs):
    code, out, err = cli("study", write_study(tmp_path), "--out", "out")
    assert code == 0, err
    assert len(counted_runs) == 2 * (2 + 2)  # two arms: two candidates at seed 0, then seeds 1 and 2
    study = json.loads((tmp_path / "out" / "study.json").read_text())
    assert set(study["arms"]) == {"magnitude", "random"} and study["seeds"] == [0, 1, 2]
    for arm, points in study["arms"].items():
        cell = points["method.sparsity=0.8"]
        scores = [read_summary(tmp_path / "out" / c["run"])["val_accuracy"] for c in cell["candidates"]]
        assert [c["val_accuracy"] for c in cell["candidates"]] == scores
        best = cell["candidates"][scores.index(max(scores))]
        assert cell["chosen"] == best["overrides"]
        summaries = [read_summary(tmp_path / "out" / run) for run in cell["runs"]]
        assert [s["seed"] for s in summaries] == [0, 1, 2] and cell["runs"][0] == best["run"]
        assert {s["method"] for s in summaries} == {arm}
        accuracies = [s["accuracy"] for s in summaries]
        assert cell["test_accuracy"] == {"mean": pytest.approx(statistics.fmean(accuracies)),
                                         "std": pytest.approx(statistics.stdev(accuracies)), "n": 3}
    table = (tmp_path / "out" / "table.md").read_text()
    mean = 100 * study["arms"]["magnitude"]["method.sparsity=0.8"]["test_accuracy"]["mean"]
    assert f"{mean:.2f} ± " in table and "(3)" in table
    assert "chosen" in (tmp_path / "out" / "choices.md").read_text()
    assert (tmp_path / "out" / "report" / "table.md").is_file()

    counted_runs.clear()
    code, _, err = cli("study", write_study(tmp_path), "--out", "out")
    assert code == 0, err
    assert counted_runs == []  # every run finished: nothing starts again
    assert json.loads((tmp_path / "out" / "study.json").read_text()) == study

    shutil.rmtree(tmp_path / "out" / study["arms"]["random"]["method.sparsity=0.8"]["runs"][2])
    code, _, err = cli("study", write_study(tmp_path), "--out", "out")
    assert code == 0, err
    assert len(counted_runs) == 1 and counted_runs[0].cfg.seed == 2 and counted_runs[0].cfg.method.name == "random"


@pytest.mark.slow
def test_a_new_seed_runs_only_the_new_runs(cli, tmp_path, counted_runs):
    one_seed = STUDY.replace("seeds: [0, 1, 2]", "seeds: [0]").replace("  random:", "  #")
    assert cli("study", write_study(tmp_path, one_seed), "--out", "out")[0] == 0
    assert len(counted_runs) == 2
    counted_runs.clear()
    code, _, err = cli("study", write_study(tmp_path, one_seed.replace("seeds: [0]", "seeds: [0, 5]")), "--out", "out")
    assert code == 0, err
    assert [run.cfg.seed for run in counted_runs] == [5]
    # an interrupted run (last.pt, no summary) is resumed in its own folder, not in a new one named resume=true
    [folder] = (tmp_path / "out" / "runs").glob("*/*/*seed=5")
    (folder / "summary.json").unlink()
    counted_runs.clear()
    code, _, err = cli("study", write_study(tmp_path, one_seed.replace("seeds: [0]", "seeds: [0, 5]")), "--out", "out")
    assert code == 0, err
    assert [(run.cfg.resume, run.dir.root.resolve()) for run in counted_runs] == [(True, folder.resolve())]
    assert (folder / "summary.json").is_file() and not list((tmp_path / "out").rglob("*resume*"))


@pytest.mark.parametrize("change,message", [
    (("select: val_accuracy", "select: val_accuracy\nrepeats: 3"), "repeats"),
    (("set: [method=random]", "set: [prune.lr=0.1]"), "arm 'random' names no method"),
    (("grid: {method.sparsity: [0.8]}", "grid: {}"), "the grid is empty"),
    (("search: {prune.lr: [0.001, 0.05]}}\nsearch_seed", "search: {prune.lr: [0.001]}}\nsearch_seed"),
     "different numbers of candidates"),
    (("search: {prune.lr: [0.001, 0.05]}}\nsearch_seed", "search: {prune.lr: [0.001, -1]}}\nsearch_seed"),
     "prune.lr=-1"),
    (("select: val_accuracy", "select: accuracy"), "test split never chooses"),
    (("seeds: [0, 1, 2]", "seeds: [0, -1]"), "seed=-1"),
    (("base: [dataset=digits,", "base: [dataset=digits, model.weights=???,"), "model.weights"),
])
def test_a_bad_study_is_one_line_before_any_run(cli, tmp_path, counted_runs, change, message):
    code, _, err = cli("study", write_study(tmp_path, STUDY.replace(*change)), "--out", "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert counted_runs == [] and not (tmp_path / "out").exists()


def test_unequal_budgets_are_allowed_when_the_study_says_so(tmp_path):
    from prunekit.study.spec import load_study

    unequal = STUDY.replace("random:    {set: [method=random],    search: {prune.lr: [0.001, 0.05]}}",
                            "random:    {set: [method=random]}")
    assert load_study(write_study(tmp_path, unequal + "budget: unequal\n"), []).cfg.budget == "unequal"


def test_a_folder_of_the_users_is_refused(cli, tmp_path, counted_runs):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = cli("study", write_study(tmp_path), "--out", "mine")
    assert code == 2 and "was not made by prunekit study" in err and counted_runs == []
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "configs" / "study").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_study_is_well_formed_and_says_what_it_reproduces(path):
    from prunekit.catalog import describe
    from prunekit.study.spec import load_study

    study = load_study(path.stem, [])
    assert study.cfg.arms and study.points and describe(path)
