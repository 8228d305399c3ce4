"""What ``prunekit sensitivity`` writes, and the folder it writes into.

The folder (``RUN_DIR/sensitivity`` unless ``--out DIR``) is the command's own: the first analysis writes a
marker file, ``.prunekit-sensitivity``, and a later one writes there again. A folder that holds anything else
(no marker, or a file that is not one of the command's) is refused before any work, so a user's file is never
overwritten; an empty or absent folder is taken.

- sensitivity.csv: one row per group and ratio: group, producers, channels, ratio, kept, val_accuracy,
  val_drop (from the dense network's), flops_fraction and params_fraction (of the dense network's, whole
  network, that group alone pruned);
- sensitivity.md: validation accuracy per group (rows) and ratio (columns), and the allocation when asked for;
- sensitivity.png: validation accuracy against ratio, one curve per group, the dense network's dashed;
- layer_sparsity.yaml (with ``--target-flops`` or ``--target-params``): {group: ratio} for ``method.layer_sparsity``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml
from matplotlib import colormaps
from matplotlib.figure import Figure

from prunekit.errors import UserError
from prunekit.report.folder import PNG_DPI
from prunekit.rundir import atomic_write_bytes
from prunekit.sensitivity.allocation import KINDS, Allotment
from prunekit.sensitivity.analysis import Sensitivity

MARKER = ".prunekit-sensitivity"
CSV, MARKDOWN, FIGURE, LAYER_SPARSITY = "sensitivity.csv", "sensitivity.md", "sensitivity.png", "layer_sparsity.yaml"
FILES = (CSV, MARKDOWN, FIGURE, LAYER_SPARSITY)


class SensitivityFolder:
    """The output folder, checked when made (before any work): absent, empty, or made by this command."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file; sensitivity needs a folder there (--out DIR)")
        entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        marker = path / MARKER
        if entries and (not marker.is_file() or marker.is_symlink()):
            raise UserError(f"{path} holds {', '.join(entries[:3])} and was not made by prunekit sensitivity (no "
                            f"{MARKER}); nothing was written: give a new folder with --out DIR")
        foreign = [name for name in entries if name != MARKER and (
            name not in FILES or not (path / name).is_file() or (path / name).is_symlink())]
        if foreign:
            raise UserError(f"{path} holds files prunekit sensitivity did not write ({', '.join(foreign[:3])}); "
                            "move them or give another folder with --out DIR")
        self.written: list[str] = []

    def write(self, name: str, payload: bytes, run: Path) -> None:
        """Write ``name`` atomically; the marker (naming the run analysed) first."""
        if not self.written:
            note = {"note": "written by prunekit sensitivity; a later analysis rewrites this folder", "run": str(run)}
            atomic_write_bytes(self.path / MARKER, (json.dumps(note) + "\n").encode())
        atomic_write_bytes(self.path / name, payload)
        self.written.append(name)

    def remove_stale(self) -> None:
        """Delete the layer_sparsity.yaml of an earlier analysis that this one did not write: its ratios came
        from other curves or another budget."""
        stale = self.path / LAYER_SPARSITY
        if LAYER_SPARSITY not in self.written and stale.is_file() and not stale.is_symlink():
            stale.unlink()


def csv_text(sensitivity: Sensitivity) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "producers", "channels", "ratio", "kept", "val_accuracy", "val_drop",
                     "flops_fraction", "params_fraction"])
    for p in sensitivity.points:
        writer.writerow([p.group, " ".join(p.producers), p.channels, p.ratio, p.kept, f"{p.val_accuracy:.6f}",
                         f"{sensitivity.drop(p):.6f}", f"{p.flops_fraction:.6f}", f"{p.params_fraction:.6f}"])
    return out.getvalue()


def markdown(sensitivity: Sensitivity, title: str, allotment: Allotment | None) -> str:
    """The accuracy table (groups by ratios) under ``title``, and the allocation when there is one."""
    lines = [f"# {title}", "", f"Validation accuracy with one group pruned alone (dense: "
             f"{sensitivity.dense_accuracy:.4f}).", "",
             "| group | channels | " + " | ".join(f"{r:g}" for r in sensitivity.ratios) + " |",
             "|---|---:|" + "---:|" * len(sensitivity.ratios)]
    for group, points in sensitivity.groups().items():
        lines.append(f"| {group} | {points[0].channels} | " + " | ".join(f"{p.val_accuracy:.4f}" for p in points)
                     + " |")
    if allotment is not None:
        lines += ["", f"## {LAYER_SPARSITY}", "", allotment_line(allotment), "", "| group | ratio | kept |",
                  "|---|---:|---:|"]
        lines += [f"| {g} | {r:g} | {allotment.kept[g]} |" for g, r in allotment.ratios.items()]
    return "\n".join(lines) + "\n"


def allotment_line(allotment: Allotment) -> str:
    achieved = ", ".join(f"{allotment.fractions[k]:.4f} of the {KINDS[k]}" for k in KINDS)
    return (f"target_{allotment.kind}={allotment.target:g}: each group at the largest ratio that costs at most "
            f"{allotment.drop:.4f} of validation accuracy alone; the network keeps {achieved}")


def yaml_text(allotment: Allotment, run: Path) -> str:
    header = (f"# method.layer_sparsity for the run in {run}, written by prunekit sensitivity\n"
              f"# {allotment_line(allotment)}\n")
    return header + yaml.safe_dump(allotment.ratios, sort_keys=False)


def figure_png(sensitivity: Sensitivity, title: str) -> bytes:
    """Validation accuracy against ratio, one curve per group, the dense network's accuracy dashed."""
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    axis = fig.subplots()
    groups = sensitivity.groups()
    colours = colormaps["tab20" if len(groups) > 10 else "tab10"]  # a residual network has a dozen groups or more
    for index, (group, points) in enumerate(groups.items()):
        axis.plot([p.ratio for p in points], [100 * p.val_accuracy for p in points], marker="o",
                  color=colours(index % colours.N), label=group)
    axis.axhline(100 * sensitivity.dense_accuracy, color="0.35", linestyle="--", linewidth=1.2, label="dense")
    axis.set(xlabel="ratio of the group's channels pruned (that group alone)", ylabel="validation accuracy (%)",
             title=title)
    axis.legend(fontsize="small", ncols=2 if len(groups) > 12 else 1, loc="lower left")
    axis.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()
