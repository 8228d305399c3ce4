"""A study file: what ``prunekit study`` runs, read and checked before any run starts.

::

    base: [dataset=digits, train.epochs=3, figures=false]   # overrides shared by every run
    grid: {method.sparsity: [0.9, 0.95]}                     # the table's rows
    arms:
      magnitude: {set: [method=magnitude], search: {prune.lr: [0.003, 0.03]}}
      random:    {set: [method=random],    search: {prune.lr: [0.003, 0.03]}}
    search_seed: 0
    seeds: [0, 1, 2]
    select: val_accuracy

Every arm is searched at ``search_seed`` over the product of its ``search`` lists, at every grid point; the
candidate with the best ``select`` (a validation number: the test split never chooses) is run again at the
other ``seeds``. Arms whose searches have different numbers of candidates are refused unless ``budget: unequal``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prunekit.config import config_dir
from prunekit.errors import UserError, file_errors
from prunekit.registry import plugin_config_dirs

Setting = tuple[tuple[str, Any], ...]  # (key, value) pairs, in the study's order


@dataclass
class ArmConfig:
    set: list[str] = field(default_factory=list)  # the arm's fixed overrides; one of them names its method
    search: dict[str, list[Any]] = field(default_factory=dict)  # key -> candidate values, searched as a product


@dataclass
class StudyConfig:
    base: list[str] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    arms: dict[str, ArmConfig] = field(default_factory=dict)
    search_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # every run's seed is checked like any run's
    select: str = "val_accuracy"  # the summary.json number that chooses, higher is better
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])  # test numbers the table reports
    budget: str = "equal"  # equal | unequal


def value_text(value: Any) -> str:
    """``value`` as a command-line override writes it (true, null, [1,2])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(value_text(item) for item in value) + "]"
    return str(value)


def overrides(setting: Setting) -> list[str]:
    return [f"{key}={value_text(value)}" for key, value in setting]


def point_name(point: Setting) -> str:
    """A grid point as study.json names it: ``key=value[,key=value]``."""
    return ",".join(overrides(point))


def product(space: dict[str, list[Any]]) -> list[Setting]:
    """Every combination of the lists of ``space``, the first key varying slowest (one empty one for {})."""
    keys = list(space)
    return [tuple(zip(keys, values)) for values in itertools.product(*(space[key] for key in keys))]


@dataclass
class Study:
    """A checked study: its name, config and the settings it runs."""

    name: str
    cfg: StudyConfig
    extra: list[str]  # overrides given on the command line, after base

    @property
    def points(self) -> list[Setting]:
        return product(self.cfg.grid)

    def candidates(self, arm: str) -> list[Setting]:
        return product(self.cfg.arms[arm].search)

    @property
    def replicate_seeds(self) -> list[int]:
        """The seeds of the chosen setting's runs: the search seed's, then the others."""
        return [self.cfg.search_seed] + [seed for seed in self.cfg.seeds if seed != self.cfg.search_seed]

    def fixed(self, arm: str, point: Setting) -> list[str]:
        """The overrides every run of ``arm`` at ``point`` shares."""
        return [*self.cfg.base, *self.extra, *self.cfg.arms[arm].set, *overrides(point)]


def find_study(name_or_file: str) -> Path:
    """The study file: a path to a YAML file, or the name of one in configs/study/ (prunekit's or a plug-in's)."""
    given = Path(name_or_file)
    if given.suffix in (".yaml", ".yml") or given.is_file():
        if not given.is_file():
            raise UserError(f"study file {given} does not exist")
        return given
    folders = [config_dir(), *plugin_config_dirs()]
    for folder in folders:
        if (folder / "study" / f"{name_or_file}.yaml").is_file():
            return folder / "study" / f"{name_or_file}.yaml"
    known = sorted({p.stem for folder in folders for p in (folder / "study").glob("*.yaml")})
    raise UserError(f"study {name_or_file!r} is unknown; give a YAML file or one of: {', '.join(known)}")


def load_study(name_or_file: str, extra: list[str]) -> Study:
    """Read and check the study file: its keys and types, a method in every arm, a non-empty grid, equal
    search budgets (unless ``budget: unequal``), and a validation number to choose by. Each run's own config is
    checked later, for every run, before any starts (prunekit/study/__init__.py)."""
    path = find_study(name_or_file)
    with file_errors(path, "read"):
        text = path.read_text()
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(StudyConfig), OmegaConf.create(text)))
    except yaml.YAMLError as err:
        raise UserError(f"study {path} is not YAML: {' '.join(str(err).split())[:160]}") from err
    except OmegaConfBaseException as err:
        raise UserError(f"study {path}: {str(err).splitlines()[0]}; the keys are: "
                        f"{', '.join(StudyConfig.__dataclass_fields__)}") from err
    where = f"study {path.stem}"
    if not cfg.grid or any(not values for values in cfg.grid.values()):
        raise UserError(f"{where}: the grid is empty; give the table's rows, e.g. grid: {{method.sparsity: [0.9]}}")
    if not cfg.arms:
        raise UserError(f"{where}: no arms; give at least one, e.g. arms: {{magnitude: {{set: [method=magnitude]}}}}")
    for arm, spec in cfg.arms.items():
        if not any(item.split("=", 1)[0].lstrip("+") == "method" for item in spec.set):
            raise UserError(f"{where}: arm {arm!r} names no method; add method=NAME to its set")
        if any(not values for values in spec.search.values()):
            raise UserError(f"{where}: arm {arm!r} searches an empty list; give every search key its values")
    if cfg.budget not in ("equal", "unequal"):
        raise UserError(f"{where}: budget={cfg.budget!r} is not allowed; choose one of: equal, unequal")
    sizes = {arm: len(product(spec.search)) for arm, spec in cfg.arms.items()}
    if len(set(sizes.values())) > 1 and cfg.budget != "unequal":
        raise UserError(f"{where}: the arms search different numbers of candidates "
                        f"({', '.join(f'{arm}: {n}' for arm, n in sizes.items())}), an unequal tuning budget; give "
                        f"every arm as many, or say budget: unequal (the table then says so)")
    if not cfg.select.startswith("val_"):
        raise UserError(f"{where}: select={cfg.select!r} is not a validation number; choose by one that starts "
                        f"with val_ (val_accuracy): the test split never chooses")
    if not cfg.seeds:
        raise UserError(f"{where}: seeds is empty; give the replicate seeds, e.g. seeds: [0, 1, 2]")
    return Study(path.stem, cfg, list(extra))
