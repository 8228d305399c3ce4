"""The console: how values are written, and the bars an interactive run shows while an epoch trains."""
from __future__ import annotations

from io import StringIO

import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console

from prunekit import console as console_module
from prunekit.config import OptimConfig
from prunekit.console import RunConsole, format_value
from prunekit.engine import build_optimizer, train_epoch


@pytest.mark.parametrize("value, text", [
    (0.00001, "0.00001"),  # four decimals would show 0.0000
    (0.99999, "0.99999"),  # four decimals would show 1.0000
    (1.0, "1.0000"),  # really whole: stays as it was
    (0.5, "0.5000"),
    (0.98765, "0.9877"),
    (2.000001, "2.000001"),
    (-0.00001, "-0.00001"),
    (0.0, "0.0000"),
    (1e-30, "1e-30"),  # beyond the decimals a double has: scientific
    (1e20, "1e+20"),
    (float("nan"), "nan"),
    (3, "3"),
    (True, "True"),
    ("mlp", "mlp"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def terminal() -> tuple[RunConsole, StringIO]:
    out = StringIO()
    return RunConsole(interactive=True, console=Console(file=out, force_terminal=True, width=120)), out


def sums(loss: float, correct: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(loss), torch.tensor(correct)


def test_short_epoch_shows_progress_before_it_ends():
    run, out = terminal()
    with run.running(), run.stage("prune", epochs=4, done=1):
        progress = run._progress
        with run.epoch("prune", 2, 4, batches=5) as report:
            for index in (1, 2, 3):
                report(index, *sums(0.5 * 2 * index, 2 * index), 2 * index)
            batch_task = progress.tasks[-1]
            assert batch_task.completed == 3
            assert batch_task.fields["stats"] == "loss 0.5000  acc 1.0000"  # the first batch is read at once
            progress.refresh()  # what rich's refresh thread does on its own
            assert "3/5" in out.getvalue()
        stage_task = progress.tasks[-1]
        assert len(progress.tasks) == 1 and stage_task.completed == 2  # the bar moved on when the epoch ended


def test_running_statistics_follow_the_sums(monkeypatch):
    monkeypatch.setattr(console_module, "_STATS_INTERVAL", 0.0)  # read at every batch
    run, _ = terminal()
    with run.running(), run.epoch("dense", 1, 1, batches=5) as report:
        report(1, *sums(1.0, 1), 4)
        report(2, *sums(2.0, 6), 8)
        assert run._progress.tasks[-1].fields["stats"] == "loss 0.2500  acc 0.7500"


def test_not_interactive_has_no_bars():
    out = StringIO()
    run = RunConsole(interactive=False, console=Console(file=out, width=200))
    with run.running(), run.stage("prune", epochs=2), run.epoch("prune", 1, 2, batches=5) as report:
        assert report is None
    run.epoch_line({"stage": "prune", "epoch": 1, "epochs": 2, "train_loss": 0.5, "train_acc": 0.99999})
    assert out.getvalue() == "prune    epoch 1/2  train_loss 0.5000  train_acc 0.99999\n"


def test_summary_shows_near_whole_values_apart():
    out = StringIO()
    RunConsole(interactive=False, console=Console(file=out, width=200)).summary(
        {"accuracy": 0.99999, "density": 1.0, "seconds": {"total": 1.0}})
    assert "0.99999" in out.getvalue() and "1.0000" in out.getvalue() and "total" not in out.getvalue()


class TinyData:
    """Six samples of four features in batches of two: just what ``train_epoch`` asks of a dataset."""

    def __init__(self):
        self.x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
        self.y = torch.tensor([0, 1, 2, 0, 1, 2])

    def num_samples(self, split):
        return len(self.y)

    def batches(self, split, batch_size, shuffle, augment, generator=None, shard=None):
        return [(self.x[i:i + batch_size], self.y[i:i + batch_size]) for i in range(0, len(self.y), batch_size)]


def test_train_epoch_reports_running_sums():
    model = torch.nn.Linear(4, 3)
    cfg = OmegaConf.structured(OptimConfig(batch_size=2, lr_schedule="constant"))
    optimizer = build_optimizer([{"params": list(model.parameters())}], cfg)
    calls = []

    def on_batch(index, loss_sum, correct, seen):
        calls.append((index, loss_sum.item(), correct.item(), seen))

    stats, step = train_epoch(model, TinyData(), optimizer, cfg, [], torch.Generator(), 0, 3, on_batch)
    assert [(index, seen) for index, _, _, seen in calls] == [(1, 2), (2, 4), (3, 6)]
    assert step == 3
    assert calls[-1][1] / 6 == pytest.approx(stats["train_loss"])
    assert calls[-1][2] / 6 == stats["train_acc"]
