"""scripts/bench_gpu.py on the CPU with tiny networks and a fake clock: the printed figures are the timed
epochs, each side's timed epoch trains every sample from the same initial weights (the warm-up is undone), and
the speedup follows the times. Nothing about real speed."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from conftest import load_script
from torch import nn

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES, BATCH = 20, 8  # the warm-up trains a full batch and the last partial one: 12 samples
SECONDS_PER_SAMPLE = {"prunekit": 1.0, "plain": 3.0}  # what the fake clock charges each side


def tiny_network(name: str, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).to(device)


def checksum(model: nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.fixture
def bench(monkeypatch):
    """The script with tiny networks, a fake clock that only the training passes move, and a record of every
    pass: (side, weights at its start, weights at its end, samples)."""
    bench = load_script("bench_gpu")
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(bench, "network", tiny_network)
    bench.passes = []

    def recorded(side: str, train, model: nn.Module, samples: int, *args, **kwargs):
        start = checksum(model)
        train(model, *args, **kwargs)
        clock.now += SECONDS_PER_SAMPLE[side] * samples
        bench.passes.append((side, start, checksum(model), samples))

    train_epoch, plain_pass = bench.train_epoch, bench.plain_pass
    monkeypatch.setattr(bench, "train_epoch", lambda model, data, *a, **k: recorded(
        "prunekit", train_epoch, model, len(data.train), data, *a, **k))
    monkeypatch.setattr(bench, "plain_pass", lambda model, opt, loader, *a: recorded(
        "plain", plain_pass, model, len(loader.dataset), opt, loader, *a))
    return bench


def test_the_figures_are_the_timed_epochs_of_both_loops(bench, capsys):
    result = bench.main(["--device", "cpu", "--samples", str(SAMPLES), "--batch-size", str(BATCH), "--no-compile"])
    initial = checksum(tiny_network("vgg16", 0, torch.device("cpu")))
    per_model = [bench.passes[i:i + 4] for i in (0, 4)]
    for passes in per_model:  # prunekit warm-up and timed epoch, then the plain loop's
        assert [(side, samples) for side, _, _, samples in passes] == [
            ("prunekit", 12), ("prunekit", SAMPLES), ("plain", 12), ("plain", SAMPLES)]
        assert all(start == pytest.approx(initial, rel=1e-12) for _, start, _, _ in passes)  # same weights
        assert all(end != start for _, start, end, _ in passes)  # and every pass trained them
    # only the second pass of each side is timed, all of it
    assert result["prunekit"] == {"vgg16": SAMPLES * 1.0, "resnet18": SAMPLES * 1.0}
    assert result["plain"] == {"vgg16": SAMPLES * 3.0, "resnet18": SAMPLES * 3.0}
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "vgg16_epoch_s=20.000 resnet18_epoch_s=20.000 speedup_vs_plain=3.00x peak_mem_gb=0.00"
    assert re.fullmatch(r"vgg16: prunekit 20\.000 s/epoch, plain 60\.000 s/epoch, 3\.00x", out[1])


def test_bad_sizes_are_a_user_error():
    bench = load_script("bench_gpu")
    with pytest.raises(bench.UserError, match="--samples=0"):
        bench.main(["--device", "cpu", "--samples", "0"])
