"""Interpretability of a pruned network: the figures and measures of a finished run, each registered in the
file that draws or computes it (:mod:`prunekit.explain.registry`), and ``prunekit explain`` (:mod:`.command`)."""
from __future__ import annotations

from prunekit.explain.mlp import explain_mlp

__all__ = ["explain_mlp"]
