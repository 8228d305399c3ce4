"""The training loop and evaluation: nothing method-specific, methods reach in through TrainHook."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from prunekit.acceleration import PLAIN, AcceleratedModel
from prunekit.distributed import world

# Told after every training batch: (batch index from 1, running loss sum, running correct count, samples seen).
# The two sums are the loop's own device tensors, updated in place: reading them (.item()) waits for the
# accelerator, so a callback should do it only now and then, and must not change them.
BatchCallback = Callable[[int, torch.Tensor, torch.Tensor, int], None]


class TrainHook:
    """Work a method or a mask set does around each optimiser step; every hook is optional."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """An extra term added to the task loss (e.g. a density penalty)."""
        return None

    def before_step(self) -> None:
        """After backward, before the optimiser step (e.g. zero the gradients of pruned weights)."""

    def after_step(self, step: int) -> None:
        """After the optimiser step; ``step`` counts the stage's steps from 1."""


OPTIMIZERS = ("sgd", "adam")


class OptimizerChain:
    """Several torch optimisers stepped as one, for parameter groups that need different kinds (a method's
    gate logits on Adam while the weights follow the stage's SGD). It offers what the training loop, the
    gradient scaler and checkpoints use of an optimiser: ``param_groups``, ``zero_grad``, ``step`` and the
    state dict (one entry per optimiser, in order)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict:
        return {"chain": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for optimizer, own in zip(self.optimizers, state["chain"], strict=True):
            optimizer.load_state_dict(own)


def build_optimizer(param_groups: list[dict], cfg: DictConfig,
                    fused: bool = True) -> torch.optim.Optimizer | OptimizerChain:
    """SGD (with momentum and weight decay) or Adam, as ``cfg.optimizer`` says, over the given parameter groups;
    ``fused=False`` gives torch's default implementation (see
    :attr:`prunekit.acceleration.AcceleratedModel.fused_optimizer`).

    A group may name a kind of its own (``{"params": ..., "optimizer": "adam", "lr": ...}``): the groups of each
    kind share one torch optimiser (the stage's own kind first), and two kinds are stepped as an
    :class:`OptimizerChain`. Adam is per parameter, so a group on Adam updates alike in either form.
    """
    # Fused kernels update every parameter in one call: a per-parameter loop costs ~2x on CPU.
    implementation = {"fused": True} if fused else {}
    kinds: dict[str, list[dict]] = {cfg.optimizer: []}
    for group in param_groups:
        own = dict(group)
        kinds.setdefault(own.pop("optimizer", cfg.optimizer), []).append(own)
    optimizers = []
    for kind, groups in kinds.items():
        if not groups:
            continue
        if kind == "adam":
            optimizers.append(torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **implementation))
        else:
            optimizers.append(torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                              weight_decay=cfg.weight_decay, **implementation))
    optimizer = optimizers[0] if len(optimizers) == 1 else OptimizerChain(optimizers)
    for group in optimizer.param_groups:  # the learning-rate schedule scales from here
        group["initial_lr"] = group["lr"]
    return optimizer


def lr_factor(cfg: DictConfig, progress: float, restarts: tuple[float, ...] = ()) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1] of a stage.

    ``cosine`` decays once over the stage; ``cycle`` decays over each stretch between ``restarts`` (the
    progress points where a pruning step happens) and starts over at each of them; ``constant`` is 1.
    """
    if cfg.lr_schedule == "constant":
        return 1.0
    start, end = 0.0, 1.0
    if cfg.lr_schedule == "cycle":
        start = max((r for r in restarts if r <= progress), default=0.0)
        end = min((r for r in restarts if r > progress), default=1.0)
    return 0.5 * (1.0 + math.cos(math.pi * (progress - start) / (end - start)))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               hooks: list[TrainHook], step: int, accelerated: AcceleratedModel | None = None,
               share: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step with every hook in its place; returns (logits, task loss), both detached.

    ``accelerated`` (prunekit/acceleration.py) brings autocast, the batch's memory format, a compiled forward
    and the fp16 gradient scaler; without it the step is plain fp32 eager. Either way the hooks see the
    gradients unscaled and the weights as the optimiser left them. ``share``: this rank's samples over the
    global batch's, times the ranks (1 in one process); DDP averages the ranks' gradients, so weighting each
    rank's loss by it makes that average the gradient of the global batch's mean loss, even or uneven.
    """
    accelerated = accelerated or PLAIN.bind(model)
    with accelerated.autocast():
        logits = accelerated.forward(accelerated.inputs(x))
        loss = F.cross_entropy(logits, y)
        total = loss
        for hook in hooks:
            extra = hook.loss(logits, y)
            if extra is not None:
                total = total + extra
        if share != 1.0:
            total = total * share
    optimizer.zero_grad(set_to_none=True)
    accelerated.backward(total, optimizer)
    for hook in hooks:
        hook.before_step()
    accelerated.step(optimizer)
    for hook in hooks:
        hook.after_step(step)
    return logits.detach(), loss.detach()


def train_epoch(
    model: nn.Module,
    data: Any,
    optimizer: torch.optim.Optimizer,
    cfg: DictConfig,
    hooks: list[TrainHook],
    generator: torch.Generator,
    step: int,
    total_steps: int,
    on_batch: BatchCallback | None = None,
    restarts: tuple[float, ...] = (),
    accelerated: AcceleratedModel | None = None,
) -> tuple[dict[str, float], int]:
    """One pass over the training split; returns (mean loss and accuracy, the step count after it).

    The learning rate of each parameter group follows ``cfg.lr_schedule`` from its ``initial_lr``
    (``restarts``: see :func:`lr_factor`).
    Running sums stay on the device so the loop never waits for the accelerator; ``on_batch`` (see
    :data:`BatchCallback`) gets them after every batch, e.g. for a progress bar. ``accelerated``: see
    :func:`train_step`. Under several ranks each takes its share of every batch and the epoch's figures are
    summed over them.
    """
    accelerated = accelerated or PLAIN.bind(model)
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, samples, ranks = 0, data.num_samples("train"), world.size()
    batches = data.batches("train", cfg.batch_size, shuffle=True, augment=True, generator=generator,
                           shard=world.shard())
    for index, (x, y) in enumerate(batches, 1):
        factor = lr_factor(cfg, step / max(total_steps, 1), restarts)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        step += 1
        batch = min(cfg.batch_size, samples - (index - 1) * cfg.batch_size)  # the global batch
        logits, loss = train_step(model, optimizer, x, y, hooks, step, accelerated, len(y) * ranks / batch)
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if on_batch is not None:
            on_batch(index, loss_sum, correct, seen)
    loss_sum, correct, seen = world.sum_([loss_sum, correct, torch.tensor(seen, device=device)])
    seen = max(int(seen), 1)
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}, step


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, split: str, batch_size: int,
             accelerated: AcceleratedModel | None = None) -> dict[str, float]:
    """Loss, top-1 accuracy and (with more than 10 classes) top-5 accuracy on one split.

    With ``accelerated``, under its autocast and memory format; always the eager model, never a compiled
    twin: an evaluation graph would be a second compilation per stage for a small share of the time. Under
    several ranks each evaluates its share of every batch and the sums are added up: every rank returns the
    figures of the whole split.
    """
    accelerated = accelerated or PLAIN.bind(model)
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in data.batches(split, batch_size, shuffle=False, augment=False, shard=world.shard()):
        with accelerated.autocast():
            logits = model(accelerated.inputs(x))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
        top1 += (logits.argmax(1) == y).sum()
        if data.num_classes > 10:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        seen += len(y)
    loss_sum, top1, top5, seen = world.sum_([loss_sum, top1, top5, torch.tensor(seen, device=device)])
    seen = int(seen)
    if seen == 0:
        return {}
    result = {"loss": loss_sum.item() / seen, "accuracy": top1.item() / seen}
    if data.num_classes > 10:
        result["top5"] = top5.item() / seen
    return result
