"""Training-time pruning methods, registered as ``method=<name>``, and the lookup of any method by name.

A training-time method learns with the network (a loss term, gates, a penalty) and subclasses
:class:`prunekit.pruning.method.PruningMethod`; its file registers it with :func:`register_method` and keeps
its config dataclass beside it. Post-hoc criteria (prunekit/pruning/criteria/) share the ``method=`` names.
"""
from __future__ import annotations

from collections.abc import Callable

from prunekit.config import MethodConfig
from prunekit.errors import UserError
from prunekit.pruning.criteria import CRITERIA, scored_method
from prunekit.pruning.method import PruningMethod
from prunekit.registry import Registry

METHODS: Registry[type[PruningMethod]] = Registry("method", "method", group="method", base=MethodConfig,
                                                  packages=("prunekit.pruning.methods",))


def register_method(name: str, *, config: type | None = None,
                    description: str | None = None) -> Callable[[type[PruningMethod]], type[PruningMethod]]:
    """Class decorator: make a :class:`PruningMethod` subclass available as ``method=<name>``."""

    def add(cls: type[PruningMethod]) -> type[PruningMethod]:
        if name in CRITERIA:
            raise UserError(f"method {name!r} is registered twice (a criterion and {cls.__module__}.{cls.__name__}); "
                            "rename one of them")
        cls.name = name
        return METHODS.register(name, config=config, description=description)(cls)

    return add


def method_names() -> list[str]:
    """Every ``method=`` value: the training-time methods and the criteria."""
    return sorted(METHODS.names() + CRITERIA.names())


def get_method_class(name: str) -> type[PruningMethod]:
    """The method registered as ``name`` (a criterion comes as the method that prunes by it); a UserError lists
    the known ones otherwise."""
    if name in CRITERIA:
        return scored_method(name)
    if name not in METHODS:
        raise UserError(f"method={name!r} is unknown; choose one of: {', '.join(method_names())}")
    return METHODS.get(name).target
