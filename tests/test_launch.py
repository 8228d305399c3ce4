"""The launch without running a job: the pre-flight and prunekit's sweeper number a sweep's jobs as Hydra's basic
sweeper does, and the sweeper launches exactly what the pre-flight decided, in runs of consecutive jobs."""
from types import SimpleNamespace

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference order, private to Hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.prunekit_sweeper.prunekit_sweeper import PrunekitSweeper
from prunekit.errors import UserError
from prunekit.sweeps import sweep_jobs


@pytest.mark.parametrize("overrides", [
    ["seed=0,1", "method=magnitude,random", "train.epochs=2"],
    ["seed=0,1", "seed=2,3,4", "figures=false"],  # a key given twice takes its last values
    ["method.sparsity=range(0.5,0.8,0.1)", "model=mlp", "hydra.sweep.dir=sweep"],
    ["data.root='a,b'", "~latency"],
])
def test_jobs_are_numbered_as_hydras_basic_sweeper_numbers_them(overrides):
    parsed = OverridesParser.create().parse_overrides(overrides)
    assert sweep_jobs(overrides) == BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def test_an_interval_is_no_sweep():
    with pytest.raises(UserError, match=r"method.sparsity=interval\(0.1,0.9\) is an interval"):
        sweep_jobs(["method.sparsity=interval(0.1,0.9)"])


def test_the_sweeper_launches_what_the_preflight_decided(tmp_path):
    batches = []

    def launch(jobs, initial_job_idx):
        batches.append((initial_job_idx, [list(job) for job in jobs]))
        return [SimpleNamespace(return_value=None) for _ in jobs]

    sweeper = PrunekitSweeper(max_batch_size=2, plan=["done", "fresh", "resume", "restart", "done", "fresh"])
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    sweeper.launcher = SimpleNamespace(launch=launch)
    sweeper.sweep(["seed=0,1,2,3,4,5"])
    assert batches == [(1, [["seed=1"], ["seed=2", "resume=true"]]), (3, [["seed=3"]]), (5, [["seed=5"]])]
    assert (tmp_path / "sweep" / "multirun.yaml").is_file()
    sweeper.plan = ["fresh"]
    with pytest.raises(ValueError, match="1 entries for 6 jobs"):
        sweeper.sweep(["seed=0,1,2,3,4,5"])
