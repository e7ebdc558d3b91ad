"""Local outlier factor over patch tokens (as in SC-CLIP and the SFP release)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import OutlierDetector


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, N, N) squared Euclidean distances, exact zeros on the diagonal."""
    sq = (x * x).sum(dim=-1)
    d = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * x @ x.transpose(1, 2)).clamp_min_(0)
    d.diagonal(dim1=1, dim2=2).zero_()
    return d


def local_outlier_factor(x: torch.Tensor, n_neighbors: int = 30) -> torch.Tensor:
    """LOF score of every token, (B, N, C) -> (B, N); larger is more outlying.

    Follows the SFP release: d is the squared distance, the k nearest neighbours of i
    exclude i, and the reachability distance uses i's own k-distance,
    reach(i, j) = max(d(i, j), k-dist(i)).  lrd(i) = k / sum_j reach(i, j) and
    score(i) = mean_j lrd(j) / lrd(i).  Scores are at least float32.
    """
    n = x.shape[1]
    k = min(n_neighbors, n - 1)
    # The distance expansion cancels badly in half precision: use at least float32.
    d = squared_distances(x.to(torch.promote_types(x.dtype, torch.float32)))
    d.diagonal(dim1=1, dim2=2).fill_(float('inf'))  # never one's own neighbour
    knn_d, knn_i = torch.topk(d, k, dim=-1, largest=False)  # ascending
    reach = torch.maximum(knn_d, knn_d[..., -1:])
    lrd = k / torch.nan_to_num(reach.mean(dim=-1), nan=1e-6)  # (B, N)
    neighbour_lrd = torch.gather(lrd.unsqueeze(1).expand(-1, n, -1), 2, knn_i)
    return (neighbour_lrd / lrd.unsqueeze(-1)).mean(dim=-1)


@OUTLIER_DETECTORS.register_module(name='LOF')
class LOFDetector(OutlierDetector):
    """Tokens whose LOF score is strictly above its ``1 - contamination`` quantile,
    in increasing patch order.  The quantile is taken in float32 (linear
    interpolation), as in the release."""

    def __init__(self, n_neighbors: int = 30, contamination: float = 0.05):
        super().__init__()
        if not 0 < contamination < 1:
            raise ValueError(f'contamination must be in (0, 1), got {contamination}')
        self.n_neighbors = n_neighbors
        self.contamination = contamination

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        scores = local_outlier_factor(tokens[:, 1:], self.n_neighbors)
        threshold = torch.quantile(scores.float(), 1 - self.contamination, dim=1, keepdim=True)
        return Outliers.from_mask(scores > threshold.to(scores.dtype), grid)
