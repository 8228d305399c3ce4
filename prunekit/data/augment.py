"""Random crop after zero padding, and random horizontal flip, for a whole batch at once on its device."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CropFlip:
    """Per-sample crop offsets and flips for one pass over a split, indexed by position in that pass.

    They are drawn for the whole pass up front, so that a batch costs no host-device round trip.
    """

    padding: int
    top: torch.Tensor  # offset of the crop window in the padded image, 0..2*padding
    left: torch.Tensor
    flip: torch.Tensor  # bool

    @classmethod
    def draw(
        cls, n: int, padding: int, hflip: bool, generator: torch.Generator | None, device: torch.device
    ) -> CropFlip:
        """Draw offsets and flips for ``n`` samples from ``generator`` (a CPU generator, or torch's default)."""
        top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
        return cls(padding, top.to(device), left.to(device), flip.to(device))

    def apply(self, x: torch.Tensor, positions: slice | torch.Tensor) -> torch.Tensor:
        """Crop and flip the batch ``x`` (N x C x H x W, any dtype) whose samples sit at ``positions`` of the pass
        (a slice, or indices: one rank's share of a batch)."""
        n, channels, height, width = x.shape
        padded_width = width + 2 * self.padding
        top, left, flip = (t[positions] for t in (self.top, self.left, self.flip))
        cols = torch.arange(width, device=x.device)
        # A flipped sample reads its crop window from right to left, so one gather does crop and flip.
        cols = torch.where(flip[:, None], width - 1 - cols, cols) + left[:, None]
        rows = top[:, None] + torch.arange(height, device=x.device)
        pixels = (rows[:, :, None] * padded_width + cols[:, None, :]).view(n, 1, height * width)
        # gather over the flattened plane is several times faster than 4-d advanced indexing on CPU.
        padded = F.pad(x, (self.padding,) * 4).flatten(2)
        return padded.gather(2, pixels.expand(n, channels, height * width)).view(n, channels, height, width)
