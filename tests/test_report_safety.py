"""prunekit report loses nothing and mixes nothing unequal: it writes only into a folder it made and deletes
only what it recorded writing there; runs on other data are other settings, a copied run counts once, and
unstably timed latencies are left out with a note. Run directories are written by hand (tests/test_report.py)."""
from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from test_report import read_csv, refused, write_run, write_sweep

from prunekit.cli import main as cli
from prunekit.report import main
from prunekit.report.folder import MARKER


@pytest.fixture
def draws(monkeypatch):
    """``draws(*stems)``: the report's figures are blank ones with these stems (drawing real ones costs time)."""
    def use(*stems: str) -> None:
        monkeypatch.setattr("prunekit.report.figures", lambda groups: {stem: Figure() for stem in stems})

    use()
    return use


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_a_folder_of_the_users_is_refused_and_left_byte_identical(tmp_path, capsys, draws):
    write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0,))
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "table.tex").write_text("\\begin{tabular}{l} my own table \\end{tabular}\n")
    (paper / "paper.md").write_text("# My paper\n\nyears of work\n")
    before = contents(paper)
    assert cli(["report", str(tmp_path / "sweep"), "--out", str(paper)]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and "paper.md, table.tex" in error[0] and "--out DIR" in error[0]
    assert contents(paper) == before
    # A report folder of a prunekit before the marker: refused alike, nothing rewritten or deleted.
    old = tmp_path / "sweep" / "report"
    old.mkdir()
    (old / "table.md").write_text("an older report\n")
    (old / "accuracy_vs_density_mnist.png").write_bytes(b"old figure")
    before = contents(old)
    refused([str(tmp_path / "sweep")], MARKER)
    assert contents(old) == before


def test_a_second_report_rewrites_the_folder_the_first_made_and_removes_its_stale_figure(tmp_path, draws):
    write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0,))
    out = tmp_path / "out"
    draws("accuracy_vs_density_mnist")  # a figure the second report does not draw
    main([str(tmp_path / "sweep"), "--out", str(out)])
    first = ["accuracy_vs_density_mnist.pdf", "accuracy_vs_density_mnist.png", "table.csv", "table.md", "table.tex"]
    assert json.loads((out / MARKER).read_text())["files"] == first
    draws("accuracy_vs_density")
    main([str(tmp_path / "sweep"), "--out", str(out)])
    second = ["accuracy_vs_density.pdf", "accuracy_vs_density.png", "table.csv", "table.md", "table.tex"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *second])
    assert json.loads((out / MARKER).read_text())["files"] == second
    empty = tmp_path / "empty"  # an empty folder holds nothing to lose: it becomes a report folder
    empty.mkdir()
    main([str(tmp_path / "sweep"), "--out", str(empty)])
    main([str(tmp_path / "sweep"), "--out", str(empty)])
    assert (empty / MARKER).is_file()


def test_a_file_named_like_a_report_file_but_not_recorded_is_never_deleted(tmp_path, draws):
    write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0,))
    out = tmp_path / "out"
    main([str(tmp_path / "sweep"), "--out", str(out)])
    mine = out / "paper.md"  # a report writes paper.md, but this one did not
    mine.write_text("mine")
    refused([str(tmp_path / "sweep"), "--out", str(out)], "did not write \\(paper.md\\)")
    assert mine.read_text() == "mine"
    mine.unlink()
    # A marker naming a file outside the folder (or no report file at all) is not trusted.
    victim = tmp_path / "table.md"
    victim.write_text("mine too")
    record = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**record, "files": [*record["files"], "../table.md"]}))
    refused([str(tmp_path / "sweep"), "--out", str(out)], "not the record of a report folder")
    assert victim.read_text() == "mine too"


def with_summary(run: Path, **entries) -> None:
    """Add ``entries`` to the run's summary.json, as a newer prunekit writes them."""
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, **entries}))


def test_runs_on_different_data_are_different_settings(tmp_path, draws):
    for name, fingerprint in (("a", "0123456789abcdef"), ("b", "fedcba9876543210")):
        write_run(tmp_path / "folders" / name, seed=0)  # one config, another data.root (ignored)
        with_summary(tmp_path / "folders" / name, data_fingerprint=fingerprint)
    main([str(tmp_path / "folders")])
    rows = read_csv(tmp_path / "folders" / "report" / "table.csv")
    assert [(r["data_fingerprint"], r["accuracy (%) n"]) for r in rows] == [
        ("0123456789abcdef", "1"), ("fedcba9876543210", "1")]
    for seed in (0, 1):  # seeds on one data set: replicates, and no fingerprint column
        write_run(tmp_path / "seeds" / str(seed), seed=seed)
        with_summary(tmp_path / "seeds" / str(seed), data_fingerprint="0123456789abcdef")
    main([str(tmp_path / "seeds")])
    rows = read_csv(tmp_path / "seeds" / "report" / "table.csv")
    assert len(rows) == 1 and rows[0]["accuracy (%) n"] == "2" and "data_fingerprint" not in rows[0]


def test_a_copied_run_is_counted_once_with_a_warning(tmp_path, capsys, draws):
    summaries = write_sweep(tmp_path / "sweep", methods=("magnitude",), sparsities=(0.5,), seeds=(0, 1))
    shutil.copytree(tmp_path / "sweep" / "0", tmp_path / "copies" / "0")
    main([str(tmp_path / "sweep"), str(tmp_path / "copies")])
    row, = read_csv(tmp_path / "sweep" / "report" / "table.csv")
    assert row["accuracy (%) n"] == "2"
    accuracy = [100 * s["accuracy"] for s in summaries[("magnitude", 0.5)]]
    assert float(row["accuracy (%) std"]) == pytest.approx(statistics.stdev(accuracy))
    warning, = capsys.readouterr().err.splitlines()
    copies = [str((tmp_path / folder / "0").resolve()) for folder in ("copies", "sweep")]
    assert "seed 0 of one setting is in 2 runs" in warning and all(path in warning for path in copies)


def test_unstable_latencies_are_left_out_with_a_note(tmp_path, draws):
    summaries = write_sweep(tmp_path / "sweep", methods=("magnitude", "random"), sparsities=(0.5,), seeds=(0, 1, 2))
    unstable = {"0", "3", "4", "5"}  # magnitude's seed 0 and every random run
    for job in map(str, range(6)):
        with_summary(tmp_path / "sweep" / job, latency_unstable=job in unstable, latency_ratio_b1=1.5)
    main([str(tmp_path / "sweep")])
    report = tmp_path / "sweep" / "report"
    magnitude, random = read_csv(report / "table.csv")
    stable = [s["latency_ratio"] for s in summaries[("magnitude", 0.5)][1:]]
    assert float(magnitude["latency_ratio (compact/dense) mean"]) == pytest.approx(statistics.mean(stable))
    assert magnitude["latency_ratio (compact/dense) n"] == "2" and magnitude["accuracy (%) n"] == "3"
    assert random["latency_ratio (compact/dense) mean"] == "" and random["accuracy (%) n"] == "3"
    note = "latency_ratio: 4 of 6 runs left out, their timing was unstable (latency_unstable in summary.json)"
    assert f"- {note}" in (report / "table.md").read_text()
    main([str(tmp_path / "sweep"), "--rows", "sparsity", "--cols", "method", "--metric", "latency_ratio_b1"])
    assert "- latency_ratio_b1: 4 of 6 runs left out" in (report / "table.md").read_text()
    row, = read_csv(report / "table.csv")
    assert (row["magnitude n"], row["random n"]) == ("2", "")
