"""Detectors that read the CLS token's attention to the patches."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import RankingDetector


@OUTLIER_DETECTORS.register_module(name='SOM')
class CLSSelfAttentionDetector(RankingDetector):
    """SFP's detector (``pm='SOM'``): patches the CLS token attends to more than they
    attend to themselves.

    With A the head-averaged attention and its CLS-to-patch row scaled by ``cls_weight``,
    candidates are patches j with A[cls, j] > A[j, j]; the ``num_outliers`` candidates
    with the largest A[cls, j] are kept, best first (fewer when fewer qualify; see
    :class:`RankingDetector` for ``num_outliers='auto'``).
    """

    needs_attention = True

    def __init__(self, num_outliers: Union[int, str] = 10, cls_weight: float = 1.5, **kwargs):
        super().__init__(num_outliers, **kwargs)
        self.cls_weight = cls_weight

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        attn = self.head_mean(attention)  # (B, 1+N, 1+N)
        from_cls = attn[:, 0, 1:] * self.cls_weight  # (B, N)
        to_self = attn[:, 1:, 1:].diagonal(dim1=1, dim2=2)  # (B, N)
        return self.select(from_cls, grid, valid=from_cls > to_self)


@OUTLIER_DETECTORS.register_module(name='cls_attn')
class CLSAttentionDetector(RankingDetector):
    """The ``num_outliers`` patches with the largest head-averaged CLS attention (the
    CLS-attention criterion alone, without SOM's comparison with self-attention)."""

    needs_attention = True

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        return self.select(self.head_mean(attention)[:, 0, 1:], grid)
