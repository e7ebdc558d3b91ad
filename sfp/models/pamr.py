"""Pixel-adaptive mask refinement (PAMR, Araslanov & Roth, CVPR 2020)."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # 3x3 window, centre at 4


def _window(x: torch.Tensor, dilation: int, with_centre: bool) -> List[torch.Tensor]:
    """The 3x3 dilated neighbourhood of every pixel (replicate padding), as shifted views."""
    h, w = x.shape[-2:]
    d = dilation
    padded = F.pad(x, [d] * 4, mode='replicate')
    return [padded[..., d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w]
            for dy, dx in _OFFSETS if with_centre or (dy, dx) != (0, 0)]


class PAMR(nn.Module):
    """Refines class maps with affinities of the image's local appearance.

    For each pixel and each of its 8 neighbours at every dilation, the affinity is
    -|I(p) - I(q)| / (1e-8 + 0.1 * sigma(p)), averaged over image channels, with sigma
    the (unbiased) standard deviation of the pixel's 3x3 windows at all dilations; a
    softmax over the neighbours normalises it.  The mask is then propagated
    ``num_iter`` times: m(p) <- sum_q a(p, q) m(q).
    """

    def __init__(self, num_iter: int = 10, dilations: Sequence[int] = (8, 16)):
        super().__init__()
        self.num_iter = num_iter
        self.dilations = tuple(dilations)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (B, K, H, W), mask (B, C, h, w) -> refined mask (B, C, H, W)."""
        mask = F.interpolate(mask, size=image.shape[-2:], mode='bilinear', align_corners=True)
        windows = [torch.stack(_window(image, d, True), dim=2) for d in self.dilations]
        sigma = torch.cat(windows, dim=2).std(dim=2, keepdim=True)  # (B, K, 1, H, W)
        centre = image.unsqueeze(2)
        diffs = torch.cat([(centre - w[:, :, [i for i in range(9) if i != 4]]).abs()
                           for w in windows], dim=2)  # (B, K, 8D, H, W)
        affinity = (-diffs / (1e-8 + 0.1 * sigma)).mean(dim=1).softmax(dim=1)  # (B, 8D, H, W)
        weights = affinity.unsqueeze(2).unbind(1)  # 8D x (B, 1, H, W)
        for _ in range(self.num_iter):
            # Neighbours are weighted one at a time: stacking them would hold 8D copies
            # of the (B, C, H, W) mask (gigabytes for many queries at full resolution).
            neighbours = [n for d in self.dilations for n in _window(mask, d, False)]
            refined = torch.zeros_like(mask)
            for weight, neighbour in zip(weights, neighbours):
                refined.addcmul_(weight, neighbour)
            mask = refined
        return mask
