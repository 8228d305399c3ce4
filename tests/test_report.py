"""prunekit report on run directories written by hand in the format `prunekit train` leaves
(.hydra/config.yaml as Hydra composes it, summary.json as the evaluate stage writes it): grouping over
seeds, the statistics, the table files, the pivot, the figures, the paper comparison and bad input."""
from __future__ import annotations

import copy
import csv
import json
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from prunekit.errors import UserError
from prunekit.report import main
from prunekit.report.formats import latex_escape

# The composed config of `prunekit train method=magnitude method.sparsity=0.5 seed=0` (a real run's
# .hydra/config.yaml, epochs shortened), interpolations left unresolved as Hydra writes them.
CONFIG = {
    "data": {"name": "digits", "root": "${oc.env:PRUNEKIT_DATA,'~/.cache/prunekit/data'}", "download": False,
             "val_fraction": 0.15, "augment": {"crop_padding": 0, "hflip": False}},
    "model": {"name": "mlp", "hidden": [300, 100], "dropout": 0.0},
    "method": {"name": "magnitude", "sparsity": 0.5, "granularity": "weight", "scope": "global", "min_keep": 1.0},
    "schedule": {"name": "agp", "initial_sparsity": 0.0, "start": 0.0, "end": 0.5, "frequency": 10, "steps": 5},
    **{stage: {"epochs": epochs, "batch_size": 64, "optimizer": "sgd", "lr": lr, "momentum": 0.9,
               "weight_decay": 0.0005, "lr_schedule": "cosine"}
       for stage, epochs, lr in (("train", 3, 0.05), ("prune", 2, 0.01), ("finetune", 1, 0.01))},
    "seed": 0, "device": "auto", "resume": False, "debug": False, "eval_batch_size": 1024, "compact": True,
    "latency": True, "cache_dir": "${oc.env:PRUNEKIT_CACHE,'~/.cache/prunekit/dense'}", "paper": {},
}
FIGURES = ("accuracy_vs_density", "accuracy_vs_flops")
PAPER = {"title": "Neural Network Pruning by Gradient Descent", "authors": "Zhang Zhang, Ruyi Tao, Jiang Zhang",
         "source": "Table 1", "metric": "accuracy", "scale": 100, "rows": "method.sparsity", "cols": "method.name",
         "table": {"0.50": {"magnitude": 91.25, "gumbel": None}, 0.8: {"random": 20}},  # "0.50" is 0.5
         "note": "numbers read off the paper's table"}


def write_run(path: Path, method_name: str = "magnitude", sparsity: float = 0.5, seed: int = 0,
              dataset: str = "digits", finished: bool = True, **config) -> dict:
    """A run directory as `prunekit train` leaves it; ``config`` sets other keys ({"prune": {"lr": 0.1}})."""
    cfg = copy.deepcopy(CONFIG)
    cfg["data"]["name"], cfg["method"]["name"], cfg["method"]["sparsity"] = dataset, method_name, sparsity
    cfg["seed"] = seed
    for section, values in config.items():
        cfg[section] = {**cfg[section], **values} if isinstance(values, dict) and section != "paper" else values
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), path / ".hydra" / "config.yaml")
    (path / ".hydra" / "overrides.yaml").write_text(f"- method={method_name}\n- seed={seed}\n")
    density = round(1 - sparsity, 6)
    kept = int(50200 * density)
    # Numbers that differ by seed and setting, so that means and standard deviations are not trivial.
    drop = (0.3 if method_name == "random" else 0.05) * sparsity ** 4
    accuracy = 0.97 - drop - 0.013 * seed - 0.002 * len(dataset)
    summary = {"dataset": dataset, "model": "mlp", "method": method_name, "seed": seed, "accuracy": accuracy,
               "val_accuracy": accuracy - 0.01, "dense_accuracy": 0.975 - 0.001 * seed, "params_total": 50610,
               "params_effective": kept + 410 - 7 * seed, "density": density, "flops_effective": 2 * kept,
               "params_compact": 50610 - 300 * seed, "flops_compact": 100400 - 600 * seed,
               "latency_ratio": 0.9 + 0.05 * seed, "seconds": {"total": 6.4}}
    if finished:
        (path / "summary.json").write_text(json.dumps(summary, indent=2))
    else:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "last.pt").write_bytes(b"")
    return summary


def write_sweep(root: Path, methods=("magnitude", "random"), sparsities=(0.5, 0.8), seeds=(0, 1),
                **config) -> dict:
    """A `prunekit train -m` sweep (job folders 0, 1, ...); returns {(method, sparsity): [summary, ...]}."""
    summaries: dict = {}
    jobs = [(m, s, seed) for m in methods for s in sparsities for seed in seeds]
    for number, (method, sparsity, seed) in enumerate(jobs):
        summary = write_run(root / str(number), method, sparsity, seed, **config)
        summaries.setdefault((method, sparsity), []).append(summary)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return summaries


@pytest.fixture
def no_figures(monkeypatch):
    """Skip drawing: the figures are checked by the tests about them, elsewhere they only cost time."""
    monkeypatch.setattr("prunekit.report.figures", lambda groups: {})


def refused(argv: list[str], match: str) -> None:
    """``main(argv)`` raises a one-line UserError matching ``match``."""
    with pytest.raises(UserError, match=match) as caught:
        main(argv)
    assert "\n" not in str(caught.value)


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def test_groups_seeds_and_writes_every_file(tmp_path, capsys):
    summaries = write_sweep(tmp_path / "sweep")
    assert main([str(tmp_path / "sweep")]) == 0
    report = tmp_path / "sweep" / "report"
    rows = read_csv(report / "table.csv")
    assert len(rows) == 4
    for row in rows:
        members = summaries[(row["method.name"], float(row["method.sparsity"]))]
        accuracy = [100 * s["accuracy"] for s in members]
        assert row["accuracy (%) n"] == "2"
        assert float(row["accuracy (%) mean"]) == pytest.approx(statistics.mean(accuracy))
        assert float(row["accuracy (%) std"]) == pytest.approx(statistics.stdev(accuracy))
        for key in ("density", "params_effective", "params_compact", "flops_effective", "flops_compact"):
            values = [s[key] for s in members]
            assert float(row[f"{key} mean"]) == pytest.approx(statistics.mean(values))
            assert float(row[f"{key} std"]) == pytest.approx(statistics.stdev(values))
    assert "top5 (%) mean" not in rows[0]  # 10 classes: no top5 in the summaries
    assert "random" in capsys.readouterr().out
    for name in ["table.md", "table.csv", "table.tex"] + [f"{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]:
        assert (report / name).stat().st_size > 0, name
    assert not (report / "paper.md").exists()
    lines = (report / "table.tex").read_text().splitlines()
    assert lines[0].startswith(r"\begin{tabular}") and lines[-1] == r"\end{tabular}"
    assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2] == r"\bottomrule"
    header, body = lines[2], lines[4:-2]
    assert len(body) == 4 and all(row.count("&") == header.count("&") for row in body)
    assert r"params\_effective" in header and r"accuracy (\%)" in header and "params_effective" not in header
    assert all(row.endswith(r"\\") and r"$\pm$" in row for row in body)


def test_latex_escapes_every_special_character():
    assert latex_escape(r"a_b 5% & #1 $x$ {y} ~z ^w \v ±") == (
        r"a\_b 5\% \& \#1 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v $\pm$")


def test_pivot_puts_methods_in_columns_and_sparsities_in_rows(tmp_path, no_figures):
    summaries = write_sweep(tmp_path / "sweep", sparsities=(0.5, 0.8, 0.9))
    main([str(tmp_path / "sweep"), "--rows", "sparsity", "--cols", "method.name", "--metric", "accuracy"])
    report = tmp_path / "sweep" / "report"
    rows = read_csv(report / "table.csv")
    assert list(rows[0]) == ["method.sparsity"] + [f"{m} {p}" for m in ("magnitude", "random")
                                                   for p in ("mean", "std", "n")]
    assert [row["method.sparsity"] for row in rows] == ["0.5", "0.8", "0.9"]
    expected = statistics.mean(100 * s["accuracy"] for s in summaries[("random", 0.8)])
    assert float(rows[1]["random mean"]) == pytest.approx(expected)
    markdown = (report / "table.md").read_text()
    assert "| method.sparsity | magnitude | random |" in markdown and "(2) |" in markdown


def test_a_setting_that_follows_the_columns_is_a_note_and_seed_rows_show_each_seed(tmp_path, no_figures):
    """method.normalize differs between methods only (l2 for random here): one row per sparsity, and a note;
    --rows seed gives every seed its own row, nothing averaged."""
    summaries = write_sweep(tmp_path / "a", methods=("magnitude",), method={"normalize": "none"})
    summaries.update(write_sweep(tmp_path / "b", methods=("random",), method={"normalize": "l2"}))
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--rows", "sparsity", "--cols", "method.name", "--out",
          str(tmp_path / "pivot")])
    rows = read_csv(tmp_path / "pivot" / "table.csv")
    assert [row["method.sparsity"] for row in rows] == ["0.5", "0.8"] and "method.normalize" not in rows[0]
    note = "- method.normalize per method.name: magnitude: none, random: l2"
    assert note in (tmp_path / "pivot" / "table.md").read_text()
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--rows", "seed", "--cols", "method.name", "--out",
          str(tmp_path / "seeds")])
    rows = read_csv(tmp_path / "seeds" / "table.csv")
    assert [(row["method.sparsity"], row["seed"], row["random n"]) for row in rows] == [
        ("0.5", "0", "1"), ("0.5", "1", "1"), ("0.8", "0", "1"), ("0.8", "1", "1")]
    assert float(rows[3]["random mean"]) == pytest.approx(100 * summaries[("random", 0.8)][1]["accuracy"])


def test_a_varying_option_becomes_a_grouping_column(tmp_path):
    write_sweep(tmp_path / "a", methods=("magnitude",), prune={"lr": 0.01})
    write_sweep(tmp_path / "b", methods=("magnitude",), prune={"lr": 0.1}, device="cuda")
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")])
    rows = read_csv(tmp_path / "out" / "table.csv")
    assert list(rows[0])[:2] == ["method.sparsity", "prune.lr"]  # config order: method before prune
    assert [(r["method.sparsity"], r["prune.lr"], r["accuracy (%) n"]) for r in rows] == [
        ("0.5", "0.01", "2"), ("0.5", "0.1", "2"), ("0.8", "0.01", "2"), ("0.8", "0.1", "2")]
    assert "device" not in rows[0] and not (tmp_path / "a" / "report").exists()


def test_a_run_made_before_an_option_existed_is_a_replicate_of_one_stating_its_default(tmp_path):
    write_run(tmp_path / "old" / "0", seed=0)  # CONFIG predates method.normalize and data.classes
    write_run(tmp_path / "new" / "1", seed=1, method={"normalize": "none"}, data={"classes": None})
    write_run(tmp_path / "other" / "2", seed=2, method={"normalize": "l2"})
    main([str(tmp_path), "--out", str(tmp_path / "out")])
    rows = read_csv(tmp_path / "out" / "table.csv")
    assert sorted((r["method.normalize"], r["accuracy (%) n"]) for r in rows) == [("l2", "1"), ("none", "2")]


def test_paper_block_is_compared_cell_by_cell(tmp_path, capsys, no_figures):
    summaries = write_sweep(tmp_path / "sweep", paper=PAPER)
    main([str(tmp_path / "sweep")])
    paper = (tmp_path / "sweep" / "report" / "paper.md").read_text()
    accuracy = [100 * s["accuracy"] for s in summaries[("magnitude", 0.5)]]
    mean, std = statistics.mean(accuracy), statistics.stdev(accuracy)
    assert f"| 0.5 | magnitude | 91.25 | {mean:.2f} ± {std:.2f} (2) | {mean - 91.25:+.2f} |" in paper
    random = statistics.mean(100 * s["accuracy"] for s in summaries[("random", 0.8)])
    assert "| 0.8 | random | 20.00 | " in paper and f"| {random - 20:+.2f} |" in paper
    assert "| 0.50 | gumbel | claimed, no number | - | - |" in paper
    assert "published cells without a measured counterpart: 0.50 / gumbel" in paper
    assert "measured cells without a published number: 0.5 / random; 0.8 / magnitude" in paper
    assert "authors: Zhang Zhang" in paper and "note: numbers read off the paper's table" in paper
    assert "91.25" in capsys.readouterr().out


def test_each_paper_block_is_compared_with_its_own_runs(tmp_path, no_figures):
    write_sweep(tmp_path / "a", methods=("magnitude",), sparsities=(0.5,), paper=PAPER)
    other = {**PAPER, "title": "Another paper", "table": {0.8: {"random": 50.0}}}
    write_sweep(tmp_path / "b", methods=("random",), sparsities=(0.8,), paper=other)
    main([str(tmp_path / "a"), str(tmp_path / "b")])
    first, second = (tmp_path / "a" / "report" / "paper.md").read_text().split("## ")[1:]
    assert first.startswith(PAPER["title"]) and "| 0.5 | magnitude | 91.25 |" in first
    assert "measured cells without a published number: none" in first
    assert second.startswith("Another paper") and "| 0.8 | random | 50.00 |" in second
    assert "magnitude" not in second


def test_unfinished_and_corrupt_runs_are_not_aggregated(tmp_path, capsys, no_figures):
    write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0, 1, 2))
    (tmp_path / "sweep" / "1" / "summary.json").write_text("{not json")
    (tmp_path / "sweep" / "2" / "summary.json").write_text("[0.9]")
    write_run(tmp_path / "sweep" / "3", seed=3, finished=False)
    main([str(tmp_path / "sweep")])
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(line.startswith("prunekit: warning: skipped") for line in warnings)
    assert str(tmp_path / "sweep" / "1" / "summary.json") in warnings[0]
    assert str(tmp_path / "sweep" / "2" / "summary.json") in warnings[1]
    report = tmp_path / "sweep" / "report"
    assert read_csv(report / "table.csv")[0]["accuracy (%) n"] == "1"
    markdown = (report / "table.md").read_text()
    assert f"unfinished, not aggregated: {(tmp_path / 'sweep' / '3').resolve()}" in markdown
    assert " (1) |" in markdown and "±" not in markdown.split("\n\n")[1]  # one seed: no standard deviation


@pytest.mark.slow
def test_mixed_datasets_are_reported_per_dataset(tmp_path, capsys):
    write_sweep(tmp_path / "a", methods=("magnitude",), seeds=(0,))
    write_sweep(tmp_path / "b", methods=("magnitude",), seeds=(0,), dataset="fashion_mnist")
    main([str(tmp_path / "a"), str(tmp_path / "b")])
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "per dataset" in warnings[0] and "fashion_mnist" in warnings[0]
    report = tmp_path / "a" / "report"
    assert [row["data.name"] for row in read_csv(report / "table.csv")] == ["digits"] * 2 + ["fashion_mnist"] * 2
    assert all((report / f"{figure}_{dataset}.{ext}").is_file() for figure in FIGURES for ext in ("png", "pdf")
               for dataset in ("digits", "fashion_mnist"))
    assert not (report / "accuracy_vs_density.png").exists()


def test_refuses_a_report_folder_holding_foreign_files(tmp_path, no_figures):
    """(The folder's marker, and stale files, are tested in test_report_safety.py.)"""
    write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0,))
    main([str(tmp_path / "sweep")])
    main([str(tmp_path / "sweep")])  # the folder it made: rewritten
    notes = tmp_path / "sweep" / "report" / "notes.txt"
    notes.write_text("mine")
    refused([str(tmp_path / "sweep")], "notes.txt")
    assert notes.read_text() == "mine" and sorted(p.name for p in notes.parent.iterdir()) == [
        ".prunekit-report", "notes.txt", "table.csv", "table.md", "table.tex"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "table.md").mkdir()  # a folder is never a report file, whatever its name
    refused([str(tmp_path / "sweep"), "--out", str(tmp_path / "mine")], "table.md")


def test_bad_input_is_one_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    refused([str(tmp_path / "empty")], "no runs below")
    assert not (tmp_path / "empty" / "report").exists()
    refused([str(tmp_path / "missing")], "not a folder")
    refused([], "arguments are required")
    refused([str(tmp_path / "empty"), "--colour"], "unrecognized arguments: --colour")
    write_sweep(tmp_path / "sweep", methods=("magnitude",), seeds=(0,))
    refused([str(tmp_path / "sweep"), str(tmp_path / "empty")], f"no runs below {tmp_path / 'empty'}")
    write_run(tmp_path / "waiting", finished=False)
    refused([str(tmp_path / "waiting")], r"nothing to report .* \(1 unfinished\)")
    sweep = str(tmp_path / "sweep")
    refused([sweep, "--rows", "sparsty", "--cols", "method"],
            r"'sparsty' is not a config key.*method\.sparsity.*short names: method, dataset")
    refused([sweep, "--rows", "sparsity", "--cols", "method", "--metric", "acc"],
            r"--metric 'acc' .*choose one of: .*accuracy.*flops_compact")
    refused([sweep, "--rows", "sparsity"], "both --rows KEY and --cols KEY")
    refused([sweep, "--rows", "method", "--cols", "method.name"], "both 'method.name'")


def test_choose_picks_by_validation_and_shows_only_the_chosen_test_accuracy(tmp_path, capsys, no_figures):
    # (method, prune.lr) -> (validation, test): the best test accuracy is never the one validation picks
    numbers = {("magnitude", 0.01): (0.90, 0.80), ("magnitude", 0.1): (0.85, 0.95),
               ("random", 0.01): (0.70, 0.90), ("random", 0.1): (0.75, 0.60)}
    for (method, lr), (val, test) in numbers.items():
        for seed in (0, 1):
            run = tmp_path / "tune" / f"{method}-{lr}-{seed}"
            summary = write_run(run, method, seed=seed, prune={"lr": lr})
            summary.update(val_accuracy=val + 0.01 * seed, accuracy=test + 0.01 * seed)
            (run / "summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path / "tune"), "--choose", "prune.lr"]) == 0
    rows = {row["method.name"]: row for row in read_csv(tmp_path / "tune" / "report" / "table.csv")}
    assert (rows["magnitude"]["chosen prune.lr"], rows["random"]["chosen prune.lr"]) == ("0.01", "0.1")
    assert float(rows["magnitude"]["accuracy (%) mean"]) == pytest.approx(80.5)
    assert float(rows["random"]["accuracy (%) mean"]) == pytest.approx(60.5)
    assert rows["magnitude"]["candidates"] == "2"
    refused([str(tmp_path / "tune"), "--choose", "prune.lr", "--rows", "method", "--cols", "seed"], "--choose")
