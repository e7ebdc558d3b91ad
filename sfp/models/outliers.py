"""The result of outlier detection: ranked patch positions per crop, batched."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch


@dataclass
class Outliers:
    """Outlier patches of a batch of crops.

    Attributes:
        index: (B, K) flat patch indices (row * cols + col) in the detector's ranking
            order, padded with -1 where a crop has fewer than K outliers.
        grid: the crops' patch grid (rows, cols).
    """

    index: torch.Tensor
    grid: Tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def mask(self) -> torch.Tensor:
        """(B, N) boolean mask of outlier patches."""
        b = self.index.shape[0]
        mask = torch.zeros(b, self.num_patches + 1, dtype=torch.bool, device=self.index.device)
        # Padding (-1) lands in the extra last column, which is dropped.
        mask.scatter_(1, torch.where(self.index < 0, self.num_patches, self.index), True)
        return mask[:, :-1]

    def counts(self) -> torch.Tensor:
        """(B,) number of outliers per crop."""
        return (self.index >= 0).sum(dim=1)

    def positions(self, crop: int) -> List[Tuple[int, int]]:
        """(row, col) of crop ``crop``'s outliers, in ranking order."""
        cols = self.grid[1]
        return [(int(i) // cols, int(i) % cols) for i in self.index[crop].tolist() if i >= 0]

    @classmethod
    def top_k(cls, scores: torch.Tensor, k: int, grid: Tuple[int, int],
              valid: Optional[torch.Tensor] = None) -> Outliers:
        """The (at most) ``k`` highest-scoring patches of each crop, best first.

        Args:
            scores: (B, N) outlier scores, higher is more outlying.
            valid: (B, N) candidates; other patches are never picked.
        """
        if valid is not None:
            scores = scores.masked_fill(~valid, float('-inf'))
        k = min(k, scores.shape[1])
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        picked = torch.gather(scores, 1, order) > float('-inf')
        # Not trimmed to the widest crop: that would wait for the device.
        return cls(torch.where(picked, order, torch.full_like(order, -1)), grid)

    @classmethod
    def from_mask(cls, mask: torch.Tensor, grid: Tuple[int, int]) -> Outliers:
        """All patches of a (B, N) mask, in increasing patch order."""
        n = mask.shape[1]
        positions = torch.arange(n, device=mask.device).expand_as(mask)
        # Outliers first (in patch order), then non-outliers pushed past n.
        order = torch.sort(torch.where(mask, positions, positions + n), dim=1).values
        index = torch.where(order < n, order, torch.full_like(order, -1))
        return cls(_trim(index), grid)


def _trim(index: torch.Tensor) -> torch.Tensor:
    """Drop trailing columns that are padding for every crop."""
    width = int((index >= 0).sum(dim=1).max()) if index.numel() else 0
    return index[:, :width]
