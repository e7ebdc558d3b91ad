"""Outlier mitigation: replace each outlier token by the mean of its clean neighbours."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ENCODER_PARTS

# The 8 neighbours of a grid cell as (row, col) offsets.
_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def mitigate_outliers(tokens: torch.Tensor, mask: torch.Tensor,
                      grid: Tuple[int, int], keep_isolated: bool = False) -> torch.Tensor:
    """Neighbour-mean interpolation of outlier patch tokens.

    Each outlier becomes the mean of those of its 8 grid neighbours that lie inside the
    grid and are not outliers; an outlier with no such neighbour becomes zero (the SFP
    release), or keeps its value with ``keep_isolated`` (SC-CLIP's release).  Other
    tokens are unchanged.

    Args:
        tokens: (B, N, C) patch tokens, row-major on ``grid``.
        mask: (B, N) True at outliers.
        grid: (rows, cols).
        keep_isolated: leave an outlier without a clean neighbour as it is.
    Returns:
        (B, N, C) purified tokens (a new tensor).
    """
    b, n, c = tokens.shape
    rows, cols = grid
    clean = (~mask).to(tokens.dtype).view(b, 1, rows, cols)
    x = tokens.transpose(1, 2).reshape(b, c, rows, cols) * clean
    x, clean = F.pad(x, (1, 1, 1, 1)), F.pad(clean, (1, 1, 1, 1))
    total = sum(x[:, :, 1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols] for dr, dc in _NEIGHBOURS)
    count = sum(clean[:, :, 1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
                for dr, dc in _NEIGHBOURS)
    mean = (total / count.clamp_min(1)).flatten(2).transpose(1, 2)  # (B, N, C)
    if keep_isolated:
        mask = mask & (count.flatten(1) > 0)
    return torch.where(mask.unsqueeze(-1), mean, tokens)


@ENCODER_PARTS.register_module()
class NeighbourMeanMitigation(nn.Module):
    """Module form of :func:`mitigate_outliers` (the release's "mean interpolation")."""

    def __init__(self, keep_isolated: bool = False):
        super().__init__()
        self.keep_isolated = keep_isolated

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor,
                grid: Tuple[int, int]) -> torch.Tensor:
        return mitigate_outliers(tokens, mask, grid, self.keep_isolated)
