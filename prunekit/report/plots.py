"""The report's figures: test accuracy against density and against FLOPs, one line per method.

Drawn on bare matplotlib ``Figure`` objects, never through pyplot, so no display or global backend state
is involved. Points are a setting's mean over seeds, error bars its standard deviation; x axes are
logarithmic because sparsity sweeps are (0.5, 0.1, 0.01 ...), and their ticks sit at the measured values.
"""
from __future__ import annotations

import math
import re
import statistics
import textwrap
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from prunekit.report.groups import DATASET, METHOD, MODEL, SPARSITY, Group, show_value
from prunekit.report.metrics import ACCURACY, DENSITY, FLOPS_COMPACT, FLOPS_EFFECTIVE, Metric

ACCURACY_AXIS = "test accuracy (%)"
DENSITY_AXIS = "density (fraction of weights kept, log scale)"
FLOPS_AXIS = "FLOPs per sample (2 per multiply-add, log scale)"
GRANULARITY = "method.granularity"
DENSE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.2}
LEGEND_WIDTH = 36  # characters per legend line: longer labels wrap rather than squeeze the axes
TICKS_ACROSS = 9  # tick labels that fit side by side on the x axis; closer ones are dropped


@dataclass
class Series:
    """The settings drawn as one line: one method (and whatever else varies besides sparsity)."""

    label: str
    groups: list[Group]


def series(groups: list[Group]) -> list[Series]:
    """``groups`` (of one dataset) split by method and by every other key that varies among them,
    except sparsity, which is the x axis."""
    varying = [key for key in dict.fromkeys(key for group in groups for key in group.settings)
               if key not in (METHOD, SPARSITY) and len({group.value(key) for group in groups}) > 1]
    line_keys = [METHOD, *varying]
    lines: dict[tuple, Series] = {}
    for group in groups:
        values = tuple(group.value(key) for key in line_keys)
        label = textwrap.fill(", ".join(_label_part(key, value) for key, value in zip(line_keys, values)),
                              LEGEND_WIDTH)
        lines.setdefault(values, Series(label, [])).groups.append(group)
    return list(lines.values())


def _label_part(key: str, value) -> str:
    # The method and its granularity read as words ("magnitude, unit"); any other key needs its name.
    return show_value(value) if key in (METHOD, GRANULARITY) else f"{key}={show_value(value)}"


def figures(groups: list[Group]) -> dict[str, Figure]:
    """The figures by file stem: ``accuracy_vs_density`` and ``accuracy_vs_flops``, or one of each per
    dataset (``accuracy_vs_density_digits``) when the runs are of several datasets."""
    by_dataset: dict[str, list[Group]] = {}
    for group in groups:
        by_dataset.setdefault(show_value(group.value(DATASET)), []).append(group)
    drawn = {}
    for dataset, members in by_dataset.items():
        suffix = f"_{_file_safe(dataset)}" if len(by_dataset) > 1 else ""
        lines, title, dense = series(members), _title(members), dense_accuracy(members)
        drawn[f"accuracy_vs_density{suffix}"] = density_figure(lines, title, dense)
        drawn[f"accuracy_vs_flops{suffix}"] = flops_figure(lines, title, dense)
    return drawn


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def density_figure(lines: list[Series], title: str, dense_accuracy: float | None) -> Figure:
    """Accuracy against density, error bars over seeds, the dense network's accuracy dashed."""
    fig, axis = _figure()
    ticks = []
    for colour, line in enumerate(lines):
        ticks += _draw(axis, line, DENSITY, f"C{colour}", "-", "o")
    _finish(fig, axis, ticks, DENSITY_AXIS, f"{title}: accuracy against density", dense_accuracy,
            _series_handles(lines))
    return fig


def flops_figure(lines: list[Series], title: str, dense_accuracy: float | None) -> Figure:
    """Accuracy against effective FLOPs (solid) and, where measured, the compact network's (dashed)."""
    fig, axis = _figure()
    effective, compact = [], []
    for colour, line in enumerate(lines):
        effective += _draw(axis, line, FLOPS_EFFECTIVE, f"C{colour}", "-", "o")
        compact += _draw(axis, line, FLOPS_COMPACT, f"C{colour}", "--", "s", hollow=True)
    handles = _series_handles(lines)
    if compact:  # the line styles only need explaining when both kinds are drawn
        handles += [Line2D([], [], color="black", marker="o", label="effective (zeros skipped)"),
                    Line2D([], [], color="black", marker="s", markerfacecolor="white", linestyle="--",
                           label="compact network")]
    _finish(fig, axis, effective + compact, FLOPS_AXIS, f"{title}: accuracy against FLOPs", dense_accuracy,
            handles)
    return fig


def _series_handles(lines: list[Series]) -> list[Line2D]:
    return [Line2D([], [], color=f"C{i}", marker="o", label=line.label) for i, line in enumerate(lines)]


def dense_accuracy(groups: list[Group]) -> float | None:
    """The mean dense accuracy (%) the runs recorded before pruning, None if none did."""
    values = [value for group in groups for value in group.values("dense_accuracy")]
    return statistics.fmean(values) * ACCURACY.scale if values else None


def _figure():
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    return fig, fig.subplots()


def _draw(axis, line: Series, x_metric: Metric, colour: str, style: str, marker: str,
          hollow: bool = False) -> list[float]:
    """Plot one series against ``x_metric``; return the x values drawn (none if no run measured it)."""
    points = []
    for group in line.groups:
        x, y = x_metric.of(group), ACCURACY.of(group)
        if x is not None and y is not None and x.mean > 0:  # a log axis has no place for 0
            points.append((x.mean, y.mean, y.std or 0.0))
    points.sort()
    if points:
        xs, ys, errors = zip(*points)
        axis.errorbar(xs, ys, yerr=errors, color=colour, linestyle=style, marker=marker, capsize=3,
                      markerfacecolor="white" if hollow else colour)
    return [x for x, _, _ in points]


def _finish(fig: Figure, axis, ticks: list[float], x_label: str, title: str, dense: float | None,
            handles: list[Line2D]) -> None:
    if dense is not None:
        axis.axhline(dense, **DENSE_STYLE)
        handles.append(Line2D([], [], **DENSE_STYLE, label=f"dense network ({dense:.2f}%)"))
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator(_spaced(ticks)))
    axis.xaxis.set_major_formatter(FuncFormatter(_tick_text))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(x_label)
    axis.set_ylabel(ACCURACY_AXIS)
    fig.suptitle(title)  # over the axes and the legend together, so that neither can cover it
    axis.grid(True, which="major", color="0.9")
    # Outside the axes, so that the legend never covers a point however the lines run.
    fig.legend(handles=handles, loc="outside right upper", title="mean ± std over seeds", fontsize=9)


def _spaced(values: list[float]) -> list[float]:
    """The measured x values to label, largest first, each at least 1/TICKS_ACROSS of the (log) axis
    from the previous one."""
    if not values:
        return []
    span = math.log10(max(values) / min(values))
    kept: list[float] = []
    for value in sorted(set(values), reverse=True):
        if not kept or math.log10(kept[-1] / value) >= span / TICKS_ACROSS:
            kept.append(value)
    return kept


def _tick_text(value: float, _position) -> str:
    if value >= 1e3:  # FLOPs: 7,040 as 7.04k, 1.2e9 as 1.2G
        exponent = min(int(math.log10(value)) // 3, 4)
        return f"{value / 10 ** (3 * exponent):.3g}{' kMGT'[exponent]}"
    return f"{value:.3g}"  # densities: 0.5, 0.0015


def _title(groups: list[Group]) -> str:
    """``dataset / model`` of the runs drawn (several models are listed)."""
    def names(key: str) -> str:
        return ", ".join(dict.fromkeys(show_value(group.value(key)) for group in groups))

    return f"{names(DATASET)} / {names(MODEL)}"
