"""Regions of a crop found by clustering its patches, and a majority vote within them
(CLIPtrase's step after the logits, Shao et al., ECCV 2024).

:class:`CorrelationRegions` clusters the rows of a patch-to-patch correlation with
scikit-learn's DBSCAN and turns the clusters into a region map at the crop's pixels;
:func:`vote_in_regions` gives every pixel of a region the label most of its pixels have.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ENCODER_PARTS


def _resize(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(n, h, w) -> (n, *size), bilinear, align_corners False."""
    return F.interpolate(maps[None], size=size, mode='bilinear', align_corners=False)[0]


@ENCODER_PARTS.register_module()
class CorrelationRegions(nn.Module):
    """A crop's regions from the (N, N) correlation of its N = rows x cols patches.

    1. DBSCAN (scikit-learn's: Euclidean distance, a point's neighbourhood includes
       itself) on the N rows of the correlation: clusters 0..n-1, -1 for noise.
    2. Per cluster, in label order, the mean of its members' rows is a (rows, cols) map;
       the n maps are upsampled bilinearly to ``upsample_ratio`` times the grid, each is
       median-filtered (``median_size`` square, mirrored borders: scipy's 'reflect'),
       and the stack is upsampled bilinearly to the crop's pixels.
    3. Each pixel's region is the cluster whose map is highest there (the first on
       ties).  Noise patches fall in some region like every other pixel.

    Args:
        eps: DBSCAN's neighbourhood radius.
        min_samples: DBSCAN's neighbours (the point included) that make a core point.
        median_size: side of the median filter.
        upsample_ratio: the median filter runs at this many times the patch grid.
    """

    def __init__(self, eps: float = 0.7, min_samples: int = 3, median_size: int = 7,
                 upsample_ratio: int = 4):
        super().__init__()
        if eps <= 0 or min_samples < 1 or median_size < 1 or upsample_ratio < 1:
            raise ValueError(f'CorrelationRegions needs eps > 0 and min_samples, median_size '
                             f'and upsample_ratio >= 1; got eps={eps}, min_samples='
                             f'{min_samples}, median_size={median_size}, upsample_ratio='
                             f'{upsample_ratio}')
        self.eps = eps
        self.min_samples = min_samples
        self.median_size = median_size
        self.upsample_ratio = upsample_ratio

    def cluster(self, correlation: torch.Tensor) -> torch.Tensor:
        """(N, N) correlation -> (N,) int64 DBSCAN labels of its rows (-1: noise)."""
        # Imported here: scikit-learn takes a second to import, and only this needs it.
        from sklearn.cluster import DBSCAN

        rows = correlation.detach().cpu().numpy()
        labels = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit_predict(rows)
        return torch.from_numpy(labels.astype(np.int64)).to(correlation.device)

    def region_map(self, correlation: torch.Tensor, labels: torch.Tensor,
                   grid: Tuple[int, int], size: Tuple[int, int]) -> torch.Tensor:
        """(N, N) correlation and (N,) cluster labels (at least one cluster) -> (H, W)
        int64 region of every pixel of a crop of ``size``."""
        from scipy.ndimage import median_filter

        count = int(labels.max()) + 1
        maps = torch.stack([correlation[labels == c].mean(dim=0) for c in range(count)])
        maps = _resize(maps.view(count, *grid),
                       (self.upsample_ratio * grid[0], self.upsample_ratio * grid[1]))
        filtered = median_filter(maps.cpu().numpy(), size=(1, self.median_size,
                                                          self.median_size), mode='reflect')
        maps = torch.from_numpy(filtered).to(correlation.device)
        return _resize(maps, tuple(size)).argmax(dim=0)

    def forward(self, correlation: torch.Tensor, grid: Tuple[int, int],
                size: Tuple[int, int]) -> Optional[torch.Tensor]:
        """(N, N) correlation of a crop of ``size`` pixels -> its (H, W) region map, or
        None when DBSCAN finds no cluster."""
        labels = self.cluster(correlation)
        if int(labels.max()) < 0:
            return None
        return self.region_map(correlation, labels, grid, size)


def vote_in_regions(labels: torch.Tensor, regions: torch.Tensor, num_classes: int,
                    priority: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Every pixel of a region takes the label most frequent among the region's pixels.

    Args:
        labels: (H, W) int64 labels in [0, num_classes).
        regions: (H, W) int64 region of every pixel, in [0, n).
        num_classes: number of classes.
        priority: (num_classes,) the class ids in the order ties are broken (the first
            wins); None: ascending ids.
    Returns:
        (H, W) int64 voted labels.
    """
    count = int(regions.max()) + 1
    votes = torch.bincount((regions * num_classes + labels).flatten(),
                           minlength=count * num_classes).view(count, num_classes)
    if priority is None:
        priority = torch.arange(num_classes, device=labels.device)
    winners = priority[votes[:, priority].argmax(dim=1)]  # argmax: the first maximum
    return winners[regions]
