"""``prunekit list``: every choice of every config group, printed from the registries.

Datasets, models, methods, schedules, figures and measures come with the one-line description their registration
gives (a plug-in's entries among them); experiments and studies are YAML files only, and give their first comment
line.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from prunekit.config import config_dir, register_schemas
from prunekit.errors import UserError
from prunekit.data.registry import DATASETS
from prunekit.explain.registry import FIGURES, MEASURES
from prunekit.models import MODELS
from prunekit.pruning.criteria import CRITERIA
from prunekit.pruning.methods import METHODS
from prunekit.pruning.schedules import SCHEDULES
from prunekit.registry import plugin_config_dirs
from prunekit.trackers import TRACKERS
from prunekit.validation import constraints


def describe(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra package directive."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").strip()
    return ""


def _methods() -> list[tuple[str, str]]:
    # rich reads [...] as markup: the kind and granularities go in parentheses; a criterion only scores, a method
    # has steps of its own (training-time machinery, rounds, or a layer-by-layer reconstruction)
    rows = [(e.name, f"{e.description} (criterion: {', '.join(e.extra['granularities'])})") for e in CRITERIA.entries()]
    rows += [(e.name, f"{e.description} (method: {', '.join(e.target.granularities)})") for e in METHODS.entries()]
    return sorted(rows)


def _drawings() -> list[tuple[str, str]]:
    # A figure or measure applies to some methods only, or to every run its predicate accepts (e.g. MLPs).
    rows = []
    for kind, registry in (("figure", FIGURES), ("measure", MEASURES)):
        for e in registry.entries():
            methods = e.extra["methods"]
            rows.append((e.name, f"{e.description} ({kind}{': ' + ', '.join(methods) if methods else ''})"))
    return sorted(rows)


def catalog() -> dict[str, list[tuple[str, str]]]:
    """Group -> [(choice, description)]: the registries' entries and the experiment presets."""
    register_schemas()
    folders = [config_dir(), *plugin_config_dirs()]
    presets, studies = (sorted(p for folder in folders for p in (folder / group).glob("*.yaml"))
                        for group in ("experiment", "study"))
    return {
        "dataset": [(e.name, e.description) for e in DATASETS.entries()],
        "model": [(e.name, e.description) for e in MODELS.entries()],
        "method": _methods(),
        "schedule": [(e.name, e.description) for e in SCHEDULES.entries()],
        "experiment": [(p.stem, describe(p)) for p in presets],
        "study": [(p.stem, describe(p)) for p in studies],
        "figure": _drawings(),
        "logger": [(e.name, e.description) for e in TRACKERS.entries()],
    }


def print_catalog() -> None:
    """Print the catalogue as one table per group."""
    console = Console()
    for group, entries in catalog().items():
        how = {"figure": "drawn at the end of a run, or later by prunekit explain",
               "study": "prunekit study NAME"}.get(group, f"{group}=NAME")
        table = Table(title=f"{group}  ({how})", title_justify="left", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        for name, text in entries or [("(none yet)", "")]:
            table.add_row(name, text)
        console.print(table)
        console.print()


# group -> the config node its choice fills (a tracker's options sit under its own name: logger=[a,b] fills both)
NODES = {"dataset": "data", "model": "model", "method": "method", "schedule": "schedule", "logger": "logger.{name}"}


def options(group: str, name: str) -> list[tuple[str, str, str]]:
    """(key, default, allowed) for every option of ``group=name`` as ``prunekit train group=name`` composes it
    (its YAML file's values), the allowed values read from its schema: what ``prunekit list method=gumbel``
    prints."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if group not in NODES:
        raise UserError(f"list {group}={name}: choose a group of {', '.join(NODES)}")
    known = [choice for choice, _ in catalog()[group]]
    if name not in known:
        raise UserError(f"{group}={name!r} is unknown; choose one of: {', '.join(known)}")
    path = NODES[group].format(name=name)
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None, job_name="list"):
        node = OmegaConf.select(compose("train", overrides=[f"{group}={name}"]), path)
    schema = node._metadata.object_type
    return [(f"{path}.{key}", str(OmegaConf.to_container(node, resolve=True)[key]), _allowed(schema, key))
            for key in node if key != "name"]


def _allowed(schema: type, key: str) -> str:
    metadata = constraints(schema, key)  # what validation checks, as it reads it
    return ", ".join(metadata["choices"]) if "choices" in metadata else str(metadata.get("range", ""))


def print_options(selection: str) -> None:
    """Print the options of one entry, ``GROUP=NAME`` (e.g. ``method=gumbel``), with defaults and allowed values."""
    group, _, name = selection.partition("=")
    table = Table(title=f"{selection}: its options, their values in prunekit train {selection}, allowed values",
                  title_justify="left", box=None)
    for column in ("option", "value", "allowed"):
        table.add_column(column, style="bold" if column == "option" else None)
    for row in options(group, name):
        table.add_row(*row)
    Console().print(table)
