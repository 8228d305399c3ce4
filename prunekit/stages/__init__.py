"""The stages of a run, small objects in a list: dense (cached) -> prune -> compact -> finetune -> evaluate.

Each stage takes the run state and returns it, possibly with another model or data view; none knows a
method by name. A stage writes checkpoints/last.pt as it goes (every epoch, and when it is done), so a
run resumes in the stage it was interrupted in, from its last epoch.
"""
from __future__ import annotations

from typing import ClassVar, Protocol

from omegaconf import DictConfig

from prunekit.state import RunState


class Stage(Protocol):
    name: ClassVar[str]

    def run(self, run, state: RunState, resume: dict | None) -> RunState:
        """Do the stage's work on ``state``; ``resume`` is the last.pt of an interrupted pass of this
        stage (None for a fresh start). ``run`` gives the config, run directory, console and checkpoints."""


def stages_for(cfg: DictConfig) -> list[Stage]:
    """The stages a config asks for, in order."""
    from prunekit.stages.compact import Compact
    from prunekit.stages.evaluate import Evaluate
    from prunekit.stages.training import Dense, Finetune, Prune

    return [Dense(), Prune(), *([Compact()] if cfg.compact else []), Finetune(), Evaluate()]
