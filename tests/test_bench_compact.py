"""Smoke test of scripts/bench_compact.py at tiny settings: the last line's format and exact compaction.
Nothing about speed."""
from __future__ import annotations

import re

import pytest

from conftest import load_script
from prunekit import latency

LAST_LINE = re.compile(r"compact_speedup_vgg16=(\d+\.\d{2})x compact_speedup_resnet18=(\d+\.\d{2})x "
                       r"compact_speedup_resnet18_filters=(\d+\.\d{2})x max_abs_diff=(\d\.\de[+-]\d+)")


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_compact")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_last_line_and_outputs_match(bench, capsys, monkeypatch):
    monkeypatch.setattr(latency, "BUDGET_S", 0.0)  # the fewest rounds: this test is about compaction
    rows = bench.main(["--batch", "2", "--device", "cpu"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match, last
    assert float(match.group(4)) <= 1e-4
    for row in rows.values():
        assert row["max_abs_diff"] <= 1e-4
        assert row["params_compact"] < row["params_dense"]
        assert row["flops_compact"] < row["flops_dense"]
    # masks written by coupled groups: compaction removes every masked channel, residual streams included
    assert all(row["coupled_kept"] == 0 for row in rows.values())
    assert rows["resnet18"]["flops_compact"] <= 0.5 * rows["resnet18"]["flops_dense"]
