"""Smoke test of scripts/bench_distributed.py at tiny settings, run as a reader runs it (its ranks are spawned
processes, which import the script as __main__): the last line's format, two gloo ranks that time the step, and
both loaders delivering a pass. Nothing about speed."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_distributed.py"
LAST_LINE = re.compile(r"step_ms_1rank=(\d+\.\d{2}) step_ms_2ranks=(\d+\.\d{2}) ratio_2ranks=(\d+\.\d{2})x "
                       r"streaming_images_per_s=(\d+\.\d{2}) in_memory_images_per_s=(\d+\.\d{2})")


@pytest.mark.slow
def test_last_line_and_figures():
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "3", "--warmup", "1", "--batch", "8",
                           "--streaming", "--images", "2", "--workers", "0"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    match = LAST_LINE.fullmatch(done.stdout.strip().splitlines()[-1])
    assert match, done.stdout
    one, two, ratio, streaming, memory = (float(value) for value in match.groups())
    assert one > 0 and two > 0 and streaming > 0 and memory > 0
    assert ratio == pytest.approx(two / one, rel=0.05)  # the printed figures are rounded
