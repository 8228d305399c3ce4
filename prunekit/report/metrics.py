"""The numbers a report shows: which summary.json keys, in which unit, and their mean ± std over seeds."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from prunekit.errors import UserError, warn
from prunekit.report.groups import UNSTABLE, Group, is_number
from prunekit.report.runs import Run
from prunekit.rundir import SUMMARY

NUMBER_FORMAT = ".4g"  # four significant digits for a metric without a format of its own


@dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation (ddof=1; None for one run) and number of runs, in display units."""

    mean: float
    std: float | None
    n: int
    spec: str = NUMBER_FORMAT  # format spec of mean and std

    def __str__(self) -> str:
        mean = format(self.mean, self.spec)
        if self.std is None:
            return f"{mean} ({self.n})"
        return f"{mean} ± {format(self.std, self.spec)} ({self.n})"


def estimate(values: list[float], scale: float = 1.0, spec: str = NUMBER_FORMAT) -> Estimate | None:
    """The Estimate of ``values`` times ``scale``; None when there are no values."""
    if not values:
        return None
    scaled = [v * scale for v in values]
    std = statistics.stdev(scaled) if len(scaled) > 1 else None
    return Estimate(statistics.fmean(scaled), std, len(scaled), spec)


@dataclass(frozen=True)
class Metric:
    """A summary.json key with the unit it is shown in: the stored value times ``scale``."""

    key: str
    label: str  # column header and axis label, with the unit
    scale: float = 1.0
    spec: str = NUMBER_FORMAT

    def of(self, group: Group) -> Estimate | None:
        """The metric's Estimate over the group's runs (None when no run has it)."""
        return estimate(group.values(self.key), self.scale, self.spec)


# Accuracies are fractions in summary.json; reports show percent, as papers print them.
ACCURACY = Metric("accuracy", "accuracy (%)", 100.0, ".2f")
DENSITY = Metric("density", "density", 1.0, ".4g")
FLOPS_EFFECTIVE = Metric("flops_effective", "flops_effective", 1.0, ",.0f")
FLOPS_COMPACT = Metric("flops_compact", "flops_compact", 1.0, ",.0f")
REPORTED = (
    ACCURACY,
    Metric("top5", "top5 (%)", 100.0, ".2f"),
    DENSITY,
    Metric("params_effective", "params_effective", 1.0, ",.0f"),
    Metric("params_compact", "params_compact", 1.0, ",.0f"),
    FLOPS_EFFECTIVE,
    FLOPS_COMPACT,
    # the fractions a budget (method.target_flops, method.target_params) is met by
    Metric("flops_fraction", "flops_fraction", 1.0, ".4f"),
    Metric("params_fraction", "params_fraction", 1.0, ".4f"),
    Metric("latency_ratio", "latency_ratio (compact/dense)", 1.0, ".3f"),
)


def present(metrics: tuple[Metric, ...], groups: list[Group]) -> list[Metric]:
    """The ``metrics`` that at least one run of ``groups`` has (top5 only exists beyond 10 classes), timed
    unstably or not: a column of left-out timings says so rather than vanish."""
    return [m for m in metrics if any(group.values(m.key) or group.unstable(m.key) for group in groups)]


def unstable_notes(keys: list[str], groups: list[Group]) -> list[str]:
    """A note per metric of ``keys`` whose numbers of some runs were left out as unstably timed."""
    notes = []
    for key in keys:
        left_out = sum(group.unstable(key) for group in groups)
        if left_out:
            total = left_out + sum(len(group.values(key)) for group in groups)
            notes.append(f"{key}: {left_out} of {total} runs left out, their timing was unstable "
                         f"({UNSTABLE} in summary.json)")
    return notes


def warn_not_numbers(runs: list[Run]) -> None:
    """One warning per metric (a reported one, or a key that is a number in some run) that a summary holds as
    something other than a number or null (a string, nan, true): the report leaves those values out."""
    keys = {metric.key for metric in REPORTED} | {key for run in runs for key, value in run.summary.items()
                                                   if is_number(value)}
    for key in sorted(keys - {"seed"}):
        odd = [run for run in runs if run.summary.get(key) is not None and not is_number(run.summary[key])]
        if odd:
            warn(f"{key} is not a number in {len(odd)} of {len(runs)} runs ({odd[0].summary[key]!r} in "
                 f"{odd[0].path / SUMMARY}); left out of the report")


def resolve_metric(name: str, groups: list[Group]) -> Metric:
    """The Metric for ``--metric name``: a reported one, or any number the summaries hold; else UserError."""
    known = {metric.key: metric for metric in REPORTED}
    numeric = sorted({key for group in groups for run in group.runs for key, value in run.summary.items()
                      if is_number(value)} - {"seed"})
    if name in numeric:
        return known.get(name, Metric(name, name))
    raise UserError(f"--metric {name!r} is not a number in these runs' summary.json; "
                    f"choose one of: {', '.join(numeric)}")

