"""Rewinding and re-initialisation: the retraining modes of the lottery-ticket literature, for any criterion.

- ``prune.rewind=weights`` (Frankle and Carbin 2019; Frankle et al. 2020): after every pruning step the surviving
  weights (and every buffer) go back to their values after ``prune.rewind_iteration`` optimiser steps of the dense
  training, the optimiser forgets its momentum, and the learning-rate schedule starts over. The weights at that
  step are taken once, while the dense network trains, and cached beside it.
- ``prune.rewind=lr`` (Renda et al. 2020): the weights stay, the learning-rate schedule starts over.
- ``prune.rewind=none``: plain fine-tuning between steps.
- ``finetune.reinit=true``: the surviving weights are drawn afresh before fine-tuning (the random
  re-initialisation control: the same masks, new weights).
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from prunekit import rng
from prunekit.cache import REWIND_CACHE, DenseCache
from prunekit.engine import TrainHook
from prunekit.errors import UserError
from prunekit.state import RunState

MASK_SUFFIX = "_mask"  # the masks (weight_mask, bias_mask, also BatchNorm's) are buffers: a rewind leaves them as they are


def weights_without_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (parameters and buffers) without its masks."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(MASK_SUFFIX)}


def check_rewind(cfg: DictConfig, dense_steps: int) -> None:
    """Refuse (one line) a rewind point the dense training does not reach, or one given without rewinding."""
    prune = cfg.prune
    if prune.rewind != "weights" and prune.rewind_iteration:
        raise UserError(f"prune.rewind_iteration={prune.rewind_iteration} is read by prune.rewind=weights only "
                        f"(prune.rewind={prune.rewind}); leave it out")
    if prune.rewind == "weights" and prune.rewind_iteration > dense_steps:
        raise UserError(f"prune.rewind_iteration={prune.rewind_iteration} is past the dense training, which takes "
                        f"{dense_steps} optimiser steps (train.epochs={cfg.train.epochs}); choose 0 to {dense_steps}")


class RewindCapture(TrainHook):
    """Takes the weights after ``iteration`` optimiser steps of the dense training into ``state.rewind``
    (iteration 0: the initial weights, taken when the hook is made)."""

    def __init__(self, state: RunState, iteration: int):
        self.state, self.iteration = state, iteration
        if iteration == 0 and state.rewind is None:
            state.rewind = weights_without_masks(state.model)

    def after_step(self, step: int) -> None:
        if step == self.iteration:
            self.state.rewind = weights_without_masks(self.state.model)


def rewind_cache(cfg: DictConfig, dense: DenseCache) -> DenseCache | None:
    """Where the weights at ``prune.rewind_iteration`` of this dense training are cached; None without rewinding."""
    if cfg.prune.rewind != "weights":
        return None
    return DenseCache(str(dense.dir), f"{dense.key}-step{cfg.prune.rewind_iteration}", kind=REWIND_CACHE)


class Rewinder:
    """What follows every pruning step of the prune stage under ``prune.rewind`` (weights: the surviving weights
    back to ``state.rewind`` and the optimiser's state cleared; the learning rate's restart is the stage's)."""

    def __init__(self, mode: str, state: RunState, optimizer=None):
        self.mode, self.state, self.optimizer = mode, state, optimizer

    @torch.no_grad()
    def __call__(self) -> None:
        if self.mode != "weights":
            return
        self.state.model.load_state_dict(self.state.rewind, strict=False)
        self.state.masks.apply()
        if self.optimizer is not None:  # momentum from before the rewind would push the rewound weights away
            for optimizer in getattr(self.optimizer, "optimizers", [self.optimizer]):
                optimizer.state.clear()


def rewound_options(prune: DictConfig) -> DictConfig:
    """The prune stage's optimiser options as training reads them: when rewinding (weights or lr), a cosine
    schedule starts over at every pruning step (``lr_schedule=cycle``)."""
    if prune.rewind == "none" or prune.lr_schedule != "cosine":
        return prune
    options = OmegaConf.to_container(prune)
    options["lr_schedule"] = "cycle"
    return OmegaConf.create(options)


def reinitialise(state: RunState, seed: int) -> None:
    """Draw the network's weights afresh (a seed of their own, derived from the run's) and keep its masks. A
    compacted network is drawn in its compact shapes (rebuilding it traces the graph: no torch.no_grad here)."""
    rng.seed_all(rng.derive(seed, 90_001))
    fresh = state.spec.build(next(state.model.parameters()).device)
    state.model.load_state_dict(weights_without_masks(fresh), strict=False)
    state.masks.apply()
