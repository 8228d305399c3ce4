"""Gumbel-Softmax pruning (Zhang, Tao and Zhang 2023, arXiv 2311.12526): weights and topology learned together.

Every weight of every Linear and Conv layer has a keep/drop gate (stored as one logit d = keep - drop,
see gumbel_gates.py). Each training forward samples a hard straight-through gate at temperature tau and
uses w * gate; evaluation, checkpoints and metrics only ever see the deterministic gate. The loss gains

    lam * N * |rho_target - density|  =  lam * |rho_target * N - gates open|,

density being the open share of a sampled gate over all N gated weights. Written per gate rather than as
a mean, the pull on each logit is lam (times the straight-through slope) whatever the size of the model:
with a plain mean, the tutorial's lambda = 0.01 (N = 160) fades to nothing on LeNet-300-100 (N = 266,200).
(The tutorial's setting is lam = 0.01 / 160 ~ 6e-5 here; issue 3's working lambda = 100 on LeNet is 4e-4.)

Two targets. ``emergent`` (the authors' tutorial): rho_target = 0 and the density is whatever lam and the
task loss settle on; the final mask is d > 0, except that a layer left with fewer open gates than its
``method.min_keep`` floor keeps its best gates in place of the weakest open ones elsewhere (same count).
``scheduled`` (default): the sparsity schedule moves rho_target from the starting density (init_keep) to
1 - method.sparsity; no weight is hard-pruned on the way; at the end a global top-k on d (each layer
keeping its floor) keeps exactly round((1 - sparsity) * N) weights and writes it into the masks, so
fine-tuning trains with the topology frozen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig

from prunekit import rng
from prunekit.config import POSITIVE, MethodConfig, one_of, ranged
from prunekit.errors import UserError
from prunekit.pruning.method import PruningMethod
from prunekit.pruning.methods import register_method
from prunekit.pruning.methods.gumbel_gates import GateSet
from prunekit.pruning.selection import resolved_scope, select_groups, select_top

_NOISE_STREAM = 7_919  # keeps the gate noise apart from other seeded streams of the run


@dataclass
class GumbelConfig(MethodConfig):
    """method=gumbel (the defaults are argued in configs/method/gumbel.yaml)."""

    # scheduled: rho_target follows the schedule, exact top-k; emergent: rho_target = 0
    target: str = one_of("scheduled", "scheduled", "emergent")
    lam: float = ranged(1e-3, 0)  # density-term pull per gate: lam * N * |rho_target - density|, one value for any N
    tau: float = ranged(3.0, **POSITIVE)  # Gumbel-Softmax temperature
    tau_final: Optional[float] = ranged(None, **POSITIVE)  # anneal tau geometrically to this; null: fixed tau
    gate_lr: float = ranged(0.1, **POSITIVE)  # learning rate of the keep-minus-drop logits (weights use the stage's lr)
    # The gates' own optimiser, whatever the stage's optimiser does to the weights: adam (the authors' tutorial)
    # or sgd (with the stage's momentum). The gates get no weight decay either way.
    gate_optimizer: str = one_of("adam", "adam", "sgd")
    # starting keep probability sigmoid(keep - drop)
    init_keep: float = ranged(0.95, 0.0, 1.0, low_open=True, high_open=True)


@register_method("gumbel", config=GumbelConfig)
class Gumbel(PruningMethod):
    """Straight-through Gumbel-Softmax gate per weight, trained with the weights; exact final top-k."""

    granularities = ("weight",)
    allocates = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        device = next(iter(self.masks.layers.values())).weight.device
        generator = torch.Generator(device=device).manual_seed(rng.derive(self.seed, _NOISE_STREAM))
        self.gates = GateSet(self.masks.layers, math.log(cfg.init_keep / (1 - cfg.init_keep)), generator)
        self.gates.tau = cfg.tau
        self.lam = cfg.lam  # read once: a node of a composed config costs ~0.1 ms per read, every step
        self.rho_start = cfg.init_keep  # expected open share of the gates at the start
        self.rho_target = 0.0 if cfg.target == "emergent" else self.rho_start

    @classmethod
    def validate(cls, cfg: DictConfig) -> None:
        super().validate(cfg)  # the allowed values and ranges of target, tau, lam, ... are in the schema
        if cfg.prune.epochs == 0:
            raise UserError("method=gumbel learns its gates during the pruning stage, but prune.epochs=0 would "
                            "keep a top-k of untrained gates; give prune.epochs >= 1")

    @classmethod
    def check_network(cls, cfg: DictConfig, masks) -> None:
        if cfg.target == "scheduled":  # an emergent density has no target for the floors to bend
            super().check_network(cfg, masks)

    @classmethod
    def unused_options(cls, cfg: DictConfig) -> dict[str, str]:
        unused = {**super().unused_options(cfg), "normalize": "the gates' logits are ranked as they are"}
        if cfg.target == "emergent":
            unused["scope"] = "method.target=emergent keeps every gate that is open, with no ranking"
        return unused

    @classmethod
    def summary_entries(cls, cfg: DictConfig) -> dict:
        if cfg.target == "emergent":  # nothing targeted a sparsity: the density emerged from lam
            return {"sparsity_target": None, "target": "emergent"}
        return {**super().summary_entries(cfg), "target": "scheduled"}

    # -- the pruning stage ---------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        # The gates need a step size and an optimiser of their own: SGD with momentum at the weights' lr barely
        # moves a logit that starts at logit(init_keep) (on digits, a top-k of such gates kept 33% accuracy at
        # 1% density, against 97% with Adam on the gates). Weight decay would drag every logit towards d = 0,
        # i.e. towards keep probability 1/2.
        return [{"params": self.gates.parameters(), "lr": self.cfg.gate_lr, "weight_decay": 0.0,
                 "optimizer": self.cfg.gate_optimizer}]

    def start(self) -> None:
        self.gates.install()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        open_count = self.gates.take_open_count()
        if open_count is None:
            return None
        return self.lam * (open_count - self.rho_target * self.gates.numel).abs()

    def prune(self, sparsity: float) -> None:
        """Move the density target along the schedule, and anneal tau geometrically towards tau_final
        in step with it (reached when the schedule is); nothing is hard-pruned here."""
        goal = self.cfg.sparsity
        progress = min(sparsity / goal, 1.0) if goal > 0 else 1.0
        if self.cfg.tau_final is not None:  # geometric annealing, done when the schedule is
            self.gates.tau = self.cfg.tau * (self.cfg.tau_final / self.cfg.tau) ** progress
        if self.cfg.target == "scheduled":
            # The schedule's density 1 - sparsity runs from 1 to `final`; map it onto rho_start -> final.
            final = 1.0 - goal
            share = ((1.0 - sparsity) - final) / (1.0 - final) if final < 1.0 else 0.0
            self.rho_target = final + (self.rho_start - final) * share

    def finish(self) -> None:
        """Freeze the deterministic topology into the masks and give the layers their own forward back."""
        self.gates.remove()
        scores = self.gates.deterministic()
        alive = self.masks.groups_alive("weight")
        if self.cfg.target == "emergent":
            # As many weights as have d > 0, which are those kept unless a layer falls below its floor.
            n_open = sum(int(((scores[name] > 0) & alive[name]).sum()) for name in scores)
            keep = select_top(scores, alive, n_open, self.cfg.min_keep)
        else:
            keep = select_groups(scores, alive, self.cfg.sparsity, resolved_scope(self.cfg.scope, "weight"),
                                 self.cfg.min_keep)
        self.masks.set_groups("weight", keep)

    # -- what the epoch log shows while the gates are still soft -----------------------------------
    @torch.no_grad()
    def epoch_end(self, epoch: int) -> dict:
        if not self.gates.installed:
            return {}
        logits = self.gates.parameters()
        n = self.gates.numel
        return {
            "density": sum(int((d > 0).sum()) for d in logits) / n,  # the deterministic gate's open share
            "gate_density_expected": sum(torch.sigmoid(d).sum().item() for d in logits) / n,
            "rho_target": self.rho_target,
            "tau": self.gates.tau,
        }

    # -- resume --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "logits": {name: d.detach().cpu().clone() for name, d in self.gates.logits.items()},
            "rho_target": self.rho_target,
            "tau": self.gates.tau,
            "generator": self.gates.generator.get_state(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for name, d in self.gates.logits.items():
            d.copy_(state["logits"][name])
        self.rho_target, self.gates.tau = state["rho_target"], state["tau"]
        self.gates.generator.set_state(state["generator"])
