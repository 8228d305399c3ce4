"""Where this process stands among the ranks of its run, and the collectives the run uses.

Without an initialised process group (a plain run) every function here is the identity or a no-op: one rank
of one, which reads every sample, is the main rank and agrees with itself. The reductions are called by every
rank at the same point of the run (a collective), so they sit where all ranks pass: after a stage's
evaluation, after a pruning step, when scores are ready.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from prunekit import rng
from prunekit.data.dataset import Shard
from prunekit.errors import UserError


def size() -> int:
    """How many ranks run this run (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run's files and console (rank 0)."""
    return rank() == 0


def shard() -> Shard | None:
    """This rank's share of every batch, or None when it reads them whole."""
    return Shard(rank(), size()) if size() > 1 else None


def own_positions(index: torch.Tensor) -> torch.Tensor:
    """This rank's share (``rank::size``) of a list of sample positions, e.g. the reference samples."""
    return index[rank()::size()]


def rank_seed(seed: int) -> int:
    """The seed of this rank's global generators (dropout, Gumbel noise): the run's own on rank 0, a stream
    derived from it on every other rank, so the ranks draw different noise for their different samples."""
    return seed if rank() == 0 else rng.derive(seed, 7_919 * rank())


def sum_(values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The sums over the ranks of ``values`` (tensors of any shape on the run's device), in one collective."""
    if size() == 1:
        return list(values)
    flat = torch.cat([v.reshape(-1).to(torch.float64) for v in values])
    dist.all_reduce(flat)
    parts = flat.split([v.numel() for v in values])
    return [part.view_as(v).to(v.dtype) for part, v in zip(parts, values, strict=True)]


def average(scores: dict[str, torch.Tensor], weight: int) -> dict[str, torch.Tensor]:
    """Scores measured on this rank's ``weight`` samples, averaged over the ranks in proportion to their
    samples: every rank gets the same scores, which are a mean over all the samples when each rank's are a
    mean over its own."""
    if size() == 1:
        return scores
    names = list(scores)
    total, *summed = sum_([torch.tensor(float(weight), device=scores[names[0]].device),
                           *(scores[name].detach().to(torch.float64) * weight for name in names)])
    return {name: (value / total).to(scores[name].dtype) for name, value in zip(names, summed, strict=True)}


def gather(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a picklable object)."""
    if size() == 1:
        return [value]
    values: list[Any] = [None] * size()
    dist.all_gather_object(values, value)
    return values


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; tensors come back on the device they left)."""
    if size() == 1:
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def masks_digest(buffers: dict[str, torch.Tensor]) -> str:
    """A sha256 of the named mask buffers, equal only for equal masks."""
    digest = hashlib.sha256()
    for name in sorted(buffers):
        digest.update(name.encode())
        digest.update(buffers[name].detach().to("cpu", torch.uint8).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_masks_agree(buffers: dict[str, torch.Tensor], when: str) -> None:
    """Stop the run with one line on every rank when the ranks' masks differ (``when``: after which step):
    a criterion that reads data must reduce its scores over the ranks before selecting."""
    if size() == 1:
        return
    digests = gather(masks_digest(buffers))
    if len(set(digests)) > 1:
        listed = ", ".join(f"rank {r}: {d}" for r, d in enumerate(digests))
        raise UserError(f"the ranks' masks differ {when} ({listed}); the method's scores differ between ranks: "
                        "reduce them over the ranks (prunekit.distributed.world.average) before selecting")


def check_batches(samples: int, batch_sizes: dict[str, int]) -> None:
    """Refuse a training batch size that leaves a rank without a sample in some batch (``batch_sizes``: option
    name -> its value; ``samples``: the training split's size)."""
    for option, batch in batch_sizes.items():
        smallest = samples % batch or batch
        if smallest < size():
            raise UserError(f"{option}={batch} leaves {smallest} training sample(s) of {samples} in the last batch for "
                            f"{size()} ranks (distributed.nproc); every rank needs one: choose another batch size")
