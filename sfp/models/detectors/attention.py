"""Detectors that read the CLS token's attention to the patches."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import OutlierDetector


@OUTLIER_DETECTORS.register_module(name='SOM')
class CLSSelfAttentionDetector(OutlierDetector):
    """SFP's detector (``pm='SOM'``): patches the CLS token attends to more than they
    attend to themselves.

    With A the head-averaged attention and its CLS-to-patch row scaled by ``cls_weight``,
    candidates are patches j with A[cls, j] > A[j, j]; the ``num_outliers`` candidates
    with the largest A[cls, j] are kept, best first (fewer when fewer qualify).
    """

    needs_attention = True

    def __init__(self, num_outliers: int = 10, cls_weight: float = 1.5):
        super().__init__()
        self.num_outliers = num_outliers
        self.cls_weight = cls_weight

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        attn = self.head_mean(attention)  # (B, 1+N, 1+N)
        from_cls = attn[:, 0, 1:] * self.cls_weight  # (B, N)
        to_self = attn[:, 1:, 1:].diagonal(dim1=1, dim2=2)  # (B, N)
        return Outliers.top_k(from_cls, self.num_outliers, grid, valid=from_cls > to_self)


@OUTLIER_DETECTORS.register_module(name='cls_attn')
class CLSAttentionDetector(OutlierDetector):
    """The ``num_outliers`` patches with the largest head-averaged CLS attention."""

    needs_attention = True

    def __init__(self, num_outliers: int = 10):
        super().__init__()
        self.num_outliers = num_outliers

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        return Outliers.top_k(self.head_mean(attention)[:, 0, 1:], self.num_outliers, grid)
