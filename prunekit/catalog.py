"""``prunekit list``: every choice of every config group, with the one-line description its YAML opens with."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from prunekit.config import config_dir

GROUPS = ("dataset", "model", "method", "schedule", "experiment")


def describe(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra package directive."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def catalog() -> dict[str, list[tuple[str, str]]]:
    """Group -> [(choice, description)], read from the shipped configs."""
    root = config_dir()
    return {
        group: [(p.stem, describe(p)) for p in sorted((root / group).glob("*.yaml"))]
        for group in GROUPS
    }


def print_catalog() -> None:
    console = Console()
    for group, entries in catalog().items():
        table = Table(title=f"{group}  ({group}=NAME)", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        for name, text in entries or [("(none yet)", "")]:
            table.add_row(name, text)
        console.print(table)
        console.print()
