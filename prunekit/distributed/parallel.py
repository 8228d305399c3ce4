"""The module a training stage trains through when several ranks run: DDP over the network and the method's own
trainable tensors, BatchNorm synchronised on request, and the buffers made equal before anything reads them.

Everything stays the same objects: the network, its parameters, masks and hooks, and the method's tensors are
only wrapped, so the optimiser, the masks and the checkpoints see what they see in one process.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from prunekit.distributed import world


class Trainable(nn.Module):
    """The network and the tensors a method trains beside it (Gumbel gate logits) as one module, so that DDP
    averages the gradients of both; its forward is the network's."""

    def __init__(self, model: nn.Module, extras: list[nn.Parameter]):
        super().__init__()
        self.model = model
        self.extras = nn.ParameterList(extras)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@contextmanager
def synchronised_batchnorm(model: nn.Module) -> Iterator[None]:
    """Every BatchNorm layer of ``model`` normalises by the statistics of the global batch while this lasts: it
    is made a torch SyncBatchNorm in place (the same object, so masks and hooks keep it) and made back after."""
    layers = [(module, type(module)) for module in model.modules()
              if isinstance(module, _BatchNorm) and not isinstance(module, nn.SyncBatchNorm)]
    for module, _ in layers:
        module.__class__ = nn.SyncBatchNorm
        module.process_group = None  # the whole world
    try:
        yield
    finally:
        for module, kind in layers:
            module.__class__ = kind
            del module.process_group


@contextmanager
def replicated(model: nn.Module, extras: list[nn.Parameter], sync_bn: bool) -> Iterator[nn.Module]:
    """The module to train ``model`` through: ``model`` itself in one process; under several ranks a DDP over
    it and ``extras`` (rank 0's weights and buffers copied to every rank first), BatchNorm synchronised when
    ``sync_bn``."""
    if world.size() == 1:
        yield model
        return
    device = next(model.parameters()).device
    with ExitStack() as stack:
        if sync_bn:
            stack.enter_context(synchronised_batchnorm(model))
        yield DistributedDataParallel(Trainable(model, extras),
                                      device_ids=[device] if device.type == "cuda" else None)


def share_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm's running statistics) to every rank: DDP sends them before each
    forward, so each rank's last training step leaves its own; an evaluation or a checkpoint reads rank 0's."""
    if world.size() == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
