"""What a run shows at the shell: rich progress bars in a terminal, one plain line per epoch otherwise."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

_BATCH_REFRESH = 10  # update the batch bar every few batches: a refresh per batch costs real time


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class RunConsole:
    """Progress for the stages of one run."""

    def __init__(self, interactive: bool | None = None):
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.console = Console()
        self._progress: Progress | None = None

    @contextmanager
    def running(self) -> Iterator["RunConsole"]:
        if not self.interactive:
            yield self
            return
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=True) as progress:
            self._progress = progress
            try:
                yield self
            finally:
                self._progress = None

    @contextmanager
    def epoch(self, stage: str, epoch: int, epochs: int, batches: int) -> Iterator[Callable[[int], None] | None]:
        """A batch-level bar for one epoch; yields the callback the training loop reports to."""
        if self._progress is None:
            yield None
            return
        task = self._progress.add_task(f"{stage} {epoch}/{epochs}", total=batches)

        def advance(done: int) -> None:
            if done % _BATCH_REFRESH == 0 or done == batches:
                self._progress.update(task, completed=done)

        try:
            yield advance
        finally:
            self._progress.remove_task(task)

    def line(self, text: str) -> None:
        """A line that stays (printed above the bars in a terminal)."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(text, highlight=False, soft_wrap=True)

    def epoch_line(self, record: dict) -> None:
        keys = ("train_loss", "train_acc", "val_loss", "val_accuracy", "density", "seconds")
        parts = [f"{k} {_fmt(record[k])}" for k in keys if k in record]
        self.line(f"{record['stage']:<8} epoch {record['epoch']}/{record['epochs']}  " + "  ".join(parts))

    def summary(self, summary: dict) -> None:
        table = Table(title="prunekit summary", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if not isinstance(value, (dict, list)):
                table.add_row(key, _fmt(value))
        self.console.print(table)
