"""What a run shows at the shell: rich progress bars in a terminal, one plain line per epoch otherwise."""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    import torch

    from prunekit.engine import BatchCallback

# Reading the running loss and accuracy (.item()) waits for the accelerator to finish its queue, so the bar
# reads them at most this often (seconds) rather than every batch.
_STATS_INTERVAL = 0.2
# A double carries at most 17 significant digits: more decimals would only show rounding noise.
_MAX_DECIMALS = 17
# From here on Python's repr writes floats in scientific notation, and a fixed-point text becomes a long
# run of digits (beyond 2**53 every float is a whole number anyway).
_SCIENTIFIC_FROM = 1e16


def format_value(value) -> str:
    """A value as the epoch lines and the summary table show it.

    Floats get four decimals, or more where four would make a value that is not a whole number look like
    one (0.99999 is ``0.99999``, not ``1.0000``; 0.00001 is ``0.00001``, not ``0.0000``); a float that is
    whole keeps four (``1.0000``). Values too large or too close to zero for fixed point, and nan/inf, are
    written as Python's repr (``1e+20``, ``1e-30``). Anything else (ints, strings, bools) is ``str(value)``.
    """
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value) or abs(value) >= _SCIENTIFIC_FROM:
        return repr(value)
    whole = value.is_integer()
    for decimals in range(4, _MAX_DECIMALS + 1):
        text = f"{value:.{decimals}f}"
        if whole or not text.rstrip("0").endswith("."):
            return text
    return repr(value)  # nearer to zero than _MAX_DECIMALS decimals reach


class RunConsole:
    """Progress for the stages of one run.

    In a terminal: a bar over the current stage's epochs and one over the current epoch's batches (with the
    running loss and accuracy), drawn by rich's refresh thread; lines printed with :meth:`line` stay above
    them. Otherwise (``interactive=False``, or stdout not a terminal): no bars, only the lines.

    A job of a sweep (``job`` set) labels its lines with its number, since parallel jobs share the terminal,
    and ends with one summary line instead of the table (``prunekit report`` tabulates sweeps).
    """

    def __init__(self, interactive: bool | None = None, console: Console | None = None, job: int | None = None):
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.console = console if console is not None else Console()
        self.prefix = "" if job is None else f"[job {job}] "
        self._progress: Progress | None = None
        self._stage_task: TaskID | None = None

    @contextmanager
    def running(self) -> Iterator["RunConsole"]:
        """The span of a run during which bars are shown (a no-op when not interactive)."""
        if not self.interactive:
            yield self
            return
        # The running statistics come last: their width changes, and would otherwise move the bar.
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[stats]}")]
        with Progress(*columns, console=self.console, transient=True) as progress:
            self._progress = progress
            try:
                yield self
            finally:
                self._progress = None
                self._stage_task = None

    @contextmanager
    def stage(self, name: str, epochs: int, done: int = 0) -> Iterator[None]:
        """A bar over the epochs of stage ``name``, ``done`` of them already trained (when resuming).

        Each :meth:`epoch` inside it moves the bar on when its training pass ends.
        """
        if self._progress is None:
            yield
            return
        self._stage_task = self._progress.add_task(f"{name:<8} epochs", total=epochs, completed=done, stats="")
        try:
            yield
        finally:
            self._progress.remove_task(self._stage_task)
            self._stage_task = None

    @contextmanager
    def epoch(self, stage: str, epoch: int, epochs: int, batches: int) -> Iterator[BatchCallback | None]:
        """A batch-level bar for one epoch; yields the callback ``engine.train_epoch`` reports to (None
        when there are no bars, so that the loop does no work for them)."""
        progress = self._progress
        if progress is None:
            yield None
            return
        task = progress.add_task(f"{stage:<8} epoch {epoch}/{epochs}", total=batches, stats="")
        next_read = 0.0  # the first batch is read at once: the bar shows figures from the start

        def report(index: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> None:
            # update() only sets fields, it does not draw: rich's refresh thread draws at its own rate.
            nonlocal next_read
            now = time.monotonic()
            if now < next_read:
                progress.update(task, completed=index)
                return
            next_read = now + _STATS_INTERVAL
            loss, accuracy = loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)
            progress.update(task, completed=index,
                            stats=f"loss {format_value(loss)}  acc {format_value(accuracy)}")

        try:
            yield report
        finally:
            progress.remove_task(task)
        # only an epoch whose training pass ended counts on the stage bar
        if self._stage_task is not None:
            progress.update(self._stage_task, completed=epoch)

    def line(self, text: str) -> None:
        """A line that stays (printed above the bars in a terminal)."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(self.prefix + text, highlight=False, markup=False, soft_wrap=True)

    def epoch_line(self, record: dict) -> None:
        """One line for an epoch's log record: stage, epoch, losses, accuracies, density, seconds."""
        keys = ("train_loss", "train_acc", "val_loss", "val_accuracy", "density", "seconds")
        parts = [f"{k} {format_value(record[k])}" for k in keys if k in record]
        self.line(f"{record['stage']:<8} epoch {record['epoch']}/{record['epochs']}  " + "  ".join(parts))

    def summary(self, summary: dict) -> None:
        """The run's summary as a two-column table (nested values, such as the seconds, are left out); one line
        for a job of a sweep."""
        if self.prefix:
            keys = ("accuracy", "density", "params_compact", "latency_ratio")
            self.line("done  " + "  ".join(f"{k} {format_value(summary[k])}" for k in keys if k in summary))
            return
        table = Table(title="prunekit summary", show_header=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if not isinstance(value, (dict, list)):
                table.add_row(key, format_value(value))
        self.console.print(table)
