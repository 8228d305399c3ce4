"""Smoke test of scripts/bench_gpu.py on the CPU at tiny sizes, eager (a CPU compile of VGG16 takes minutes): the
last line's format and that it reports what was measured. Nothing about speed."""
from __future__ import annotations

import re

import pytest
from conftest import load_script

LAST_LINE = re.compile(r"vgg16_epoch_s=(\d+\.\d{3}) resnet18_epoch_s=(\d+\.\d{3}) speedup_vs_plain=(\d+\.\d{2})x "
                       r"peak_mem_gb=(\d+\.\d{2})")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_last_line(capsys):
    bench = load_script("bench_gpu")
    result = bench.main(["--device", "cpu", "--samples", "12", "--batch-size", "8", "--no-compile", "--threads", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("device cpu")
    match = LAST_LINE.fullmatch(out[-1])
    assert match, out[-1]
    vgg, resnet, speedup, peak = map(float, match.groups())
    assert (vgg, resnet) == (round(result["prunekit"]["vgg16"], 3), round(result["prunekit"]["resnet18"], 3))
    assert speedup == pytest.approx(sum(result["plain"].values()) / sum(result["prunekit"].values()), abs=0.01)
    assert peak == 0 and vgg > 0 and resnet > 0


def test_bad_sizes_are_a_user_error():
    bench = load_script("bench_gpu")
    with pytest.raises(bench.UserError, match="--samples=0"):
        bench.main(["--device", "cpu", "--samples", "0"])
