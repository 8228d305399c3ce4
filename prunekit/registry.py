"""One registry style for everything a config can name: methods, criteria, models, datasets, schedules, figures.

Each kind keeps one :class:`Registry` in the module that defines the kind, and every entry registers itself with
a decorator in the file that defines it, its typed config dataclass beside it (timm's ``register_model``,
open_lth's strategy file with its hparams)::

    @register_method("my_idea", config=MyIdeaConfig)
    class MyIdea(TrainingMethod): ...

A registry whose kind is a config group stores each entry's config dataclass in Hydra's ConfigStore as
``schema/<group>/<name>``, so the entry's YAML file opens with ``defaults: [/schema/<group>/<name>@_here_]``
and a misspelt key or a value of the wrong type fails when the config is composed. The same entries give
``prunekit list`` its lines and validation its allowed names: nothing is declared twice.

Entries are found, not listed: a registry imports every module of its built-in packages, then every plug-in
module named in the entry-point group ``prunekit.plugins`` (:func:`load_plugins`), the first time it is asked.
So adding a method to prunekit, or to a package of one's own, is one file and its YAML, with no import line.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from hydra.core.config_store import ConfigStore

from prunekit.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered thing: its name, the object itself, its config dataclass, a one-line description, and any
    facts its kind asks of it (``extra``, e.g. a dataset's availability check)."""

    name: str
    target: T
    config: type | None
    description: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring: the description an entry gets when it gives none."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0].rstrip(".") if doc else ""


PLUGIN_GROUP = "prunekit.plugins"  # entry points: name = "module.to.import"
REGISTRIES: list[Registry] = []  # every registry made, for load_all and `prunekit list`


def plugin_modules() -> list[str]:
    """The modules that installed packages name in the ``prunekit.plugins`` entry-point group, in name order."""
    return [point.value for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda point: point.name)]


def load_plugins() -> None:
    """Import every plug-in module once (each registers its entries by decorator). A plug-in that fails to
    import is named in one line: its own traceback is for its author (debug=true)."""
    for module in plugin_modules():
        try:
            importlib.import_module(module)
        except Exception as err:
            raise UserError(f"plug-in module {module!r} (entry point group {PLUGIN_GROUP}) does not import: "
                            f"{type(err).__name__}: {err}") from err


def plugin_config_dirs() -> list[Path]:
    """The ``configs`` folder beside each plug-in module (its package's folder), where it has one: Hydra
    searches them after prunekit's own configs (hydra_plugins/prunekit_plugins)."""
    folders = []
    for module in plugin_modules():
        spec = importlib.util.find_spec(module.partition(":")[0])
        origin = Path(spec.origin).parent if spec is not None and spec.origin else None
        if origin is not None and (origin / "configs").is_dir():
            folders.append(origin / "configs")
    return folders


class Registry(Generic[T]):
    """Names -> entries of one kind. ``option`` is the config key that picks one (``method``, ``model.name``)
    and names it in error messages; ``group`` is the config group whose schemas the entries' configs are
    (None for kinds that are no config group, e.g. figures); ``base`` is the config of an entry that gives none;
    ``packages`` are the built-in packages whose modules define the entries."""

    def __init__(self, kind: str, option: str, group: str | None = None, base: type | None = None,
                 packages: tuple[str, ...] = ()):
        self.kind, self.option, self.group, self.base, self.packages = kind, option, group, base, packages
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        REGISTRIES.append(self)
        if group is not None and base is not None:
            ConfigStore.instance().store(group=f"schema/{group}", name="base", node=base)

    def register(self, name: str, *, config: type | None = None, description: str | None = None,
                 **extra: Any) -> Callable[[T], T]:
        """Decorator: make the decorated class or function available as ``<option>=<name>``. A second entry under
        a name already taken is refused (a plug-in cannot silently replace a built-in)."""

        def add(target: T) -> T:
            if name in self._entries and self._entries[name].target is not target:
                raise UserError(f"{self.kind} {name!r} is registered twice ({_origin(self._entries[name].target)} "
                                f"and {_origin(target)}); rename one of them")
            node = config or self.base
            self._entries[name] = Entry(name, target, node, description or first_line(target), dict(extra))
            if self.group is not None and node is not None:
                ConfigStore.instance().store(group=f"schema/{self.group}", name=name, node=node)
            return target

        return add

    def load(self) -> None:
        """Import the built-in modules and the plug-ins, once, so that every entry is registered."""
        if self._loaded:
            return
        self._loaded = True
        for package in self.packages:
            path = importlib.import_module(package).__path__
            for module in pkgutil.iter_modules(path, prefix=f"{package}."):
                importlib.import_module(module.name)
        load_plugins()

    def get(self, name: str) -> Entry[T]:
        """The entry registered as ``name``; a UserError that lists the known names otherwise."""
        self.load()
        if name not in self._entries:
            raise UserError(f"{self.option}={name!r} is unknown; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        """Every entry, sorted by name."""
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _origin(target: Any) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"
