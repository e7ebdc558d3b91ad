"""Clustering detectors: tokens that fall in no cluster, or in a tiny one, are outliers.

Both work on L2-normalised patch tokens (cosine geometry, so the scale of the massive
activations does not dominate) and are batched over crops in plain PyTorch.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import OutlierDetector


def _small_cluster_mask(labels: torch.Tensor, valid: torch.Tensor, num_labels: int,
                        min_size: int) -> torch.Tensor:
    """(B, N) True where a token's cluster has fewer than ``min_size`` members."""
    counts = torch.zeros(labels.shape[0], num_labels, dtype=torch.long, device=labels.device)
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    counts.scatter_add_(1, safe, valid.long())
    return valid & (torch.gather(counts, 1, safe) < min_size)


def _connected_components(adjacency: torch.Tensor) -> torch.Tensor:
    """(B, N, N) symmetric boolean graph -> (B, N) component labels (smallest member)."""
    n = adjacency.shape[1]
    labels = torch.arange(n, device=adjacency.device).expand(adjacency.shape[0], n).clone()
    big = torch.full_like(labels, n)
    for _ in range(n):  # min-label propagation; converges in graph-diameter steps
        neighbour_min = torch.where(adjacency, labels.unsqueeze(1), big.unsqueeze(1)).amin(-1)
        updated = torch.minimum(labels, neighbour_min)
        if torch.equal(updated, labels):
            break
        labels = updated
    return labels


@OUTLIER_DETECTORS.register_module(name='DBSCAN')
class DBSCANDetector(OutlierDetector):
    """DBSCAN over patch tokens; noise points and members of tiny clusters are outliers.

    Distances are cosine distances (1 - cosine similarity).  ``eps`` defaults to a
    data-driven radius per crop: ``eps_scale`` times the median over tokens of the
    distance to their ``min_samples``-th nearest neighbour, so dense regions form
    clusters whatever the layer's spread.  Core tokens have at least ``min_samples``
    neighbours within eps (themselves included); clusters are the connected components
    of core tokens, border tokens join a neighbouring core's cluster, the rest is noise.
    Outliers, most isolated first (largest k-distance), are capped at ``max_outliers``.
    """

    def __init__(self, eps: Optional[float] = None, min_samples: int = 5,
                 eps_scale: float = 2.0, min_cluster_fraction: float = 0.02,
                 max_outliers: Optional[int] = 10):
        super().__init__()
        self.eps = eps
        self.min_samples = min_samples
        self.eps_scale = eps_scale
        self.min_cluster_fraction = min_cluster_fraction
        self.max_outliers = max_outliers

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        x = F.normalize(tokens[:, 1:].float(), dim=-1)  # (B, N, C)
        b, n, _ = x.shape
        dist = (1 - x @ x.transpose(1, 2)).clamp_min_(0)  # (B, N, N)
        dist.diagonal(dim1=1, dim2=2).zero_()
        k = min(self.min_samples, n) - 1
        kdist = dist.topk(k + 1, dim=-1, largest=False).values[..., -1]  # (B, N)
        if self.eps is None:
            eps = self.eps_scale * kdist.median(dim=1, keepdim=True).values  # (B, 1)
        else:
            eps = torch.full((b, 1), float(self.eps), device=x.device)
        near = dist <= eps.unsqueeze(-1)  # (B, N, N), self included
        core = near.sum(-1) >= self.min_samples  # (B, N)
        core_graph = near & core.unsqueeze(1) & core.unsqueeze(2)
        labels = _connected_components(core_graph)
        # Border tokens take the label of their nearest core neighbour within eps.
        core_dist = torch.where(near & core.unsqueeze(1), dist, torch.full_like(dist, 2.0))
        nearest_core = core_dist.argmin(-1)
        has_core = core_dist.amin(-1) < 2.0
        labels = torch.where(core, labels, torch.gather(labels, 1, nearest_core))
        clustered = core | has_core
        min_size = max(2, round(self.min_cluster_fraction * n))
        outlier = ~clustered | _small_cluster_mask(labels, clustered, n, min_size)
        return Outliers.top_k(kdist, self.max_outliers or n, grid, valid=outlier)


@OUTLIER_DETECTORS.register_module(name='KMeans')
class KMeansDetector(OutlierDetector):
    """k-means over patch tokens; members of clusters smaller than
    ``min_cluster_fraction`` of the crop are outliers, farthest from their centroid first.

    Initialisation is deterministic (farthest-point seeding from the token closest to
    the mean), so results do not depend on a random state.
    """

    def __init__(self, num_clusters: int = 8, iterations: int = 20,
                 min_cluster_fraction: float = 0.03, max_outliers: Optional[int] = 10):
        super().__init__()
        self.num_clusters = num_clusters
        self.iterations = iterations
        self.min_cluster_fraction = min_cluster_fraction
        self.max_outliers = max_outliers

    @staticmethod
    def _seed(x: torch.Tensor, k: int) -> torch.Tensor:
        """(B, N, C) -> (B, k, C) farthest-point seeds."""
        first = (x - x.mean(1, keepdim=True)).norm(dim=-1).argmin(-1)  # (B,)
        chosen = [first]
        nearest = (x - x[torch.arange(x.shape[0]), first].unsqueeze(1)).norm(dim=-1)
        for _ in range(k - 1):
            far = nearest.argmax(-1)
            chosen.append(far)
            nearest = torch.minimum(
                nearest, (x - x[torch.arange(x.shape[0]), far].unsqueeze(1)).norm(dim=-1))
        index = torch.stack(chosen, dim=1)  # (B, k)
        return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        x = F.normalize(tokens[:, 1:].float(), dim=-1)  # (B, N, C)
        n = x.shape[1]
        k = min(self.num_clusters, n)
        centroids = self._seed(x, k)
        for _ in range(self.iterations):
            assign = torch.cdist(x, centroids).argmin(-1)  # (B, N)
            one_hot = F.one_hot(assign, k).to(x.dtype)  # (B, N, k)
            sizes = one_hot.sum(1)  # (B, k)
            sums = one_hot.transpose(1, 2) @ x  # (B, k, C)
            centroids = torch.where(sizes.unsqueeze(-1) > 0,
                                    sums / sizes.clamp_min(1).unsqueeze(-1), centroids)
        dist = torch.cdist(x, centroids)
        assign = dist.argmin(-1)
        spread = dist.gather(-1, assign.unsqueeze(-1)).squeeze(-1)
        min_size = max(2, round(self.min_cluster_fraction * n))
        small = _small_cluster_mask(assign, torch.ones_like(assign, dtype=torch.bool), k,
                                    min_size)
        return Outliers.top_k(spread, self.max_outliers or n, grid, valid=small)
