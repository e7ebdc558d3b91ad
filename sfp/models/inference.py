"""Sliding-window geometry and per-crop logits."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

Window = Tuple[int, int, int, int]  # y1, y2, x1, x2


def _axis_windows(length: int, crop: int, stride: int) -> List[Tuple[int, int]]:
    count = max(length - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(count):
        end = min(i * stride + crop, length)
        spans.append((max(end - crop, 0), end))
    return spans


def sliding_windows(height: int, width: int, crop: int, stride: int) -> List[Window]:
    """Windows (y1, y2, x1, x2) covering an image, row by row.

    mmseg's scheme without padding: windows start every ``stride`` pixels, the last one
    on each axis is shifted back to end at the border, and an image smaller than the
    crop gives one window of its own size.
    """
    if crop <= 0 or stride <= 0:
        raise ValueError(f'crop and stride must be positive, got {crop} and {stride}')
    return [(y1, y2, x1, x2) for y1, y2 in _axis_windows(height, crop, stride)
            for x1, x2 in _axis_windows(width, crop, stride)]


def patch_logits(features: torch.Tensor, queries: torch.Tensor, grid: Tuple[int, int],
                 size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Cosine logits of patch features against queries on the patch grid.

    Args:
        features: (B, N, D) patch features.
        queries: (Q, D) L2-normalised query features.
        grid: patch grid (rows, cols) with rows * cols == N.
        size: if given, the logits are resized bilinearly (align_corners False) to it.
    Returns:
        (B, Q, rows, cols), or (B, Q, *size).
    """
    logits = F.normalize(features, dim=-1) @ queries.t()  # (B, N, Q)
    logits = logits.transpose(1, 2).reshape(features.shape[0], -1, *grid)
    if size is None:
        return logits
    return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
