"""Registry of pruning methods: one module per method, each registered under its config name."""
from __future__ import annotations

from prunekit.errors import UserError
from prunekit.pruning.methods.base import PruningMethod

METHODS: dict[str, type[PruningMethod]] = {}


def register(cls: type[PruningMethod]) -> type[PruningMethod]:
    """Class decorator: make a method available as ``method=<cls.name>``."""
    METHODS[cls.name] = cls
    return cls


def get_method_class(name: str) -> type[PruningMethod]:
    """The method registered as ``name``; a UserError lists the known ones otherwise."""
    if name not in METHODS:
        raise UserError(f"method={name!r} is unknown; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# Imported for their @register side effect.
from prunekit.pruning.methods import crespr, first_order, gumbel, inputprune, lrp, magnitude, random  # noqa: E402,F401
