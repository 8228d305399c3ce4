"""Latency timing: the networks take turns, the medians, spreads and paired ratios are computed from the rounds,
and an unstable measurement is flagged. Time comes from a fake clock; nothing here asserts a real timing."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from conftest import read_summary
from prunekit import latency

CPU = torch.device("cpu")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorded(nn.Module):
    """A network whose passes record its name and batch size and take the next of ``durations`` (ms) on ``clock``."""

    def __init__(self, name: str, calls: list, clock: FakeClock | None = None, durations: list[float] = ()):
        super().__init__()
        self.name, self.calls, self.clock, self.durations = name, calls, clock, list(durations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.name, x.shape[0]))
        if self.clock is not None:
            self.clock.now += self.durations.pop(0) / 1000
        return x


@pytest.fixture
def rounds(monkeypatch):
    """Exactly ``n`` timed rounds after the warm-up, on a fake clock; returns (clock, set_rounds)."""
    clock = FakeClock()
    monkeypatch.setattr(latency, "clock", clock)

    def set_rounds(n: int) -> FakeClock:
        monkeypatch.setattr(latency, "MIN_ROUNDS", n)
        monkeypatch.setattr(latency, "MAX_ROUNDS", n)
        return clock

    return set_rounds


def timed(durations: dict[str, list[float]], clock: FakeClock) -> latency.Latency:
    """Time networks that take ``durations`` (ms, one per timed round) after warm-up passes of 100 ms."""
    calls: list = []
    models = {name: (Recorded(name, calls, clock, [100.0] * latency.WARMUP + d), (3,)) for name, d in durations.items()}
    return latency.latency_table(models, [4], CPU)


def test_networks_take_turns_at_every_batch_size_after_warm_up():
    calls: list = []
    models = {name: (Recorded(name, calls).train(), (3,)) for name in ("dense", "masked", "compact")}
    result = latency.latency_table(models, [1, 4], CPU)
    per_batch = {b: [name for name, size in calls if size == b] for b in (1, 4)}
    assert [size for _, size in calls] == sorted(size for _, size in calls)  # one batch size after the other
    for b, names in per_batch.items():
        passes = len(names) // 3
        assert names == ["dense", "masked", "compact"] * passes  # A B C A B C ..., never two of one in a row
        rounds = len(result.times["dense"][f"b{b}"])
        assert passes == latency.WARMUP + rounds and latency.MIN_ROUNDS <= rounds <= latency.MAX_ROUNDS
        assert {len(result.times[name][f"b{b}"]) for name in models} == {rounds}
    assert all(model.training for model, _ in models.values())  # each left in its own mode


def test_median_and_interquartile_range_of_the_rounds(rounds):
    clock = rounds(8)
    result = timed({"dense": [1, 2, 3, 4, 5, 6, 7, 8], "compact": [8, 7, 6, 5, 4, 3, 2, 1]}, clock)
    assert result.times["dense"]["b4"] == pytest.approx([1, 2, 3, 4, 5, 6, 7, 8])  # the warm-up is not counted
    assert result.medians()["dense"]["b4"] == pytest.approx(4.5)
    # quartiles interpolated between the sorted times: positions 1.75 and 5.25 of 0..7
    assert result.iqrs()["dense"]["b4"] == pytest.approx(6.25 - 2.75)


def test_the_ratio_pairs_the_passes_of_one_round(rounds):
    clock = rounds(5)
    # the load rose in round 3 between the dense and the compact pass: the medians come from different loads
    result = timed({"dense": [1, 1, 1, 9, 9], "compact": [2, 2, 18, 18, 18]}, clock)
    medians = result.medians()
    assert medians["compact"]["b4"] / medians["dense"]["b4"] == pytest.approx(18)
    assert result.ratio("compact", "dense", "b4") == pytest.approx(2)


def test_a_wide_spread_is_flagged_unstable(rounds):
    clock = rounds(8)
    steady = [10, 10.5, 10, 11, 10, 10.2, 10, 10.8]
    assert not timed({"dense": steady, "compact": steady}, clock).unstable()
    spread = [1, 1, 1, 1, 30, 30, 30, 30]  # IQR far above half the median
    result = timed({"dense": steady, "compact": spread}, clock)
    assert result.unstable() and result.iqrs()["compact"]["b4"] > latency.UNSTABLE_SPREAD * 15.5


def test_rounds_stop_at_the_budget_once_the_minimum_is_done(rounds, monkeypatch):
    clock = rounds(3)
    monkeypatch.setattr(latency, "MAX_ROUNDS", 1000)  # far away: the budget decides
    per_pass = 1000 * latency.BUDGET_S * 0.065  # a round of two passes takes 13% of the budget
    result = timed({"dense": [per_pass] * 20, "compact": [per_pass] * 20}, clock)
    assert len(result.times["dense"]["b4"]) == 8  # the first round to end past the budget is the last


@pytest.mark.slow
def test_a_run_records_medians_spreads_and_the_flag(cli, tmp_path, monkeypatch):
    draws = random.Random(0)
    clock = FakeClock()

    def erratic() -> float:  # every read moves the clock by an exponential draw: passes of widely spread lengths
        clock.now += draws.expovariate(1000.0)
        return clock.now

    monkeypatch.setattr(latency, "clock", erratic)
    code, out, err = cli("train", "method.granularity=unit", "train.epochs=1", "prune.epochs=1", "finetune.epochs=0",
                         "finetune.batch_size=16", "figures=false", "hydra.run.dir=run")
    assert code == 0, err
    summary = read_summary(tmp_path / "run")
    shape = {name: sorted(figures) for name, figures in summary["latency_ms"].items()}
    assert shape == {name: ["b1", "b16"] for name in ("dense", "masked", "compact")}
    assert {name: sorted(f) for name, f in summary["latency_iqr_ms"].items()} == shape
    assert summary["latency_unstable"] is True and "latency: unstable" in out
    assert summary["latency_ratio"] > 0 and summary["latency_ratio_b1"] > 0
