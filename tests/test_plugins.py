"""A plug-in from another package: found through the ``prunekit.plugins`` entry points, its config folder on
Hydra's search path, run, listed, explained, swept and reported like a built-in method.

The plug-in is examples/plugin, installed the way a user's pip installs it (built offline with hatchling into
a folder of its own); the runs happen in subprocesses, so prunekit's registries start empty as a user's do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import hand_installed, read_summary
from prunekit.errors import UserError
from prunekit.registry import Registry, plugin_config_dirs, plugin_modules

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin"
QUICK = ("train.epochs=8", "prune.epochs=3", "finetune.epochs=3", "latency=false")


def prunekit(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "PRUNEKIT_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "prunekit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_entry_points_name_the_plug_in_and_its_config_folder(tmp_path, monkeypatch):
    site = hand_installed(tmp_path / "site", "prunekit_example", EXAMPLE / "prunekit_example")
    monkeypatch.syspath_prepend(str(site))
    assert "prunekit_example" in plugin_modules()
    assert site / "prunekit_example" / "configs" in plugin_config_dirs()


def test_a_name_is_registered_once():
    registry = Registry("thing", "thing")
    registry.register("one")(len)
    registry.register("one")(len)  # the same object again (a module imported twice) is no clash
    with pytest.raises(UserError, match="'one' is registered twice"):
        registry.register("one")(abs)
    assert registry.names() == ["one"] and registry.get("one").description


@pytest.mark.slow
def test_an_installed_plug_in_shows_in_the_list_and_composes(tmp_path):
    site = hand_installed(tmp_path / "site", "prunekit_example", EXAMPLE / "prunekit_example")
    listed = prunekit(site, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "example" in listed.stdout and "plug-in" in listed.stdout
    composed = prunekit(site, tmp_path, "train", "method=example", "method.power=2", "--cfg", "job")
    assert composed.returncode == 0, composed.stderr
    assert "name: example" in composed.stdout and "power: 2" in composed.stdout
    refused = prunekit(site, tmp_path, "train", "method=example", "method.power=3", "--cfg", "job")
    assert refused.returncode == 2 and "method.power=3" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_a_plug_in_that_takes_a_built_in_name_or_fails_to_import_is_one_line(tmp_path):
    clash = tmp_path / "clash_src"
    clash.mkdir()
    (clash / "__init__.py").write_text(
        "from prunekit.pruning.criteria import register_criterion\n\n"
        "@register_criterion('magnitude')\ndef magnitude(context):\n    '''A second magnitude.'''\n")
    site = hand_installed(tmp_path / "site", "clash", clash)
    result = prunekit(site, tmp_path, "list")
    assert result.returncode == 2 and "'magnitude' is registered twice" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (site / "clash" / "__init__.py").write_text("import a_module_that_is_not_there\n")
    result = prunekit(site, tmp_path, "list")
    assert result.returncode == 2 and "plug-in module 'clash'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_example_plug_in_installed_by_pip_runs_sweeps_reports_and_explains(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "--target", str(site), str(EXAMPLE)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    assert (site / "prunekit_example").is_dir() and not (tmp_path / "site" / "prunekit").exists()

    sweep = prunekit(site, tmp_path, "train", "-m", "method=example,magnitude", "method.sparsity=0.9",
                     "figures=false", *QUICK, "hydra.sweep.dir=sweep")
    assert sweep.returncode == 0, sweep.stderr
    runs = {read_summary(path.parent)["method"]: path.parent for path in (tmp_path / "sweep").glob("*/summary.json")}
    assert set(runs) == {"example", "magnitude"}
    example = read_summary(runs["example"])
    assert example["density"] == pytest.approx(0.1, abs=0.01) and example["accuracy"] > 0.85

    explained = prunekit(site, tmp_path, "explain", str(runs["example"]))
    assert explained.returncode == 0, explained.stderr
    assert {"importance.png", "pathways.png", "symmetry.png"} <= {p.name for p in (runs["example"] / "figures").iterdir()}
    assert "modularity_q" in json.loads((runs["example"] / "summary.json").read_text())

    report = prunekit(site, tmp_path, "report", "sweep", "--out", "report")
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "table.md").read_text()
    assert "example" in table and "magnitude" in table
