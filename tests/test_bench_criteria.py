"""Smoke test of scripts/bench_criteria.py at tiny settings: the last line's format only. Nothing about speed."""
from __future__ import annotations

import re

import pytest
from conftest import load_script

LAST_LINE = re.compile(r"lrp_score_vs_backward=(\d+\.\d{2})x")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_last_line(capsys):
    bench = load_script("bench_criteria")
    result = bench.main(["--model", "cnn", "--samples", "4", "--repeats", "1", "--threads", "1"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match, last
    assert float(match.group(1)) == pytest.approx(result["ratio"], abs=0.01)
    assert result["lrp"] > 0 and result["backward"] > 0
