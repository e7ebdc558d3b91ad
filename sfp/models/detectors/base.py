"""The interface every outlier detector implements."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..outliers import Outliers


class OutlierDetector(nn.Module):
    """Finds outlier patch tokens in a batch of crops.

    Subclasses implement :meth:`forward`; those that read attention weights set
    ``needs_attention = True`` so that the encoder materialises them (only then, and
    only for the detection block).
    """

    needs_attention: bool = False

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        """Detect outliers.

        Args:
            tokens: (B, 1 + N, C) output of the detection block, CLS first, patches
                row-major on the ``grid``.
            attention: (B, heads, 1 + N, 1 + N) that block's attention weights, or
                None when ``needs_attention`` is False.
            grid: patch grid (rows, cols), rows * cols == N.
        """
        raise NotImplementedError

    @staticmethod
    def head_mean(attention: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention averaged over heads, (B, 1 + N, 1 + N)."""
        if attention is None:
            raise ValueError('this detector reads attention weights, but none were given')
        return attention.mean(dim=1)


class RankingDetector(OutlierDetector):
    """A detector that scores patches and keeps the top ones.

    Args:
        num_outliers: how many to keep: a fixed count (the release: 10), or ``'auto'``
            for a self-adaptive count (the paper's variant): the patches whose score is
            a robust outlier of the crop's scores, above median + ``auto_z`` x 1.4826 MAD,
            at most ``auto_max_fraction`` of the patches (torch's median: for an even
            count, the lower of the two middle values).
    """

    def __init__(self, num_outliers: Union[int, str] = 10, auto_z: float = 3.5,
                 auto_max_fraction: float = 0.1):
        super().__init__()
        if num_outliers != 'auto' and not (isinstance(num_outliers, int) and num_outliers > 0):
            raise ValueError(f"num_outliers must be a positive int or 'auto', got "
                             f"{num_outliers!r}")
        self.num_outliers = num_outliers
        self.auto_z = auto_z
        self.auto_max_fraction = auto_max_fraction

    def select(self, scores: torch.Tensor, grid: Tuple[int, int],
               valid: Optional[torch.Tensor] = None) -> Outliers:
        """Keep the top patches of (B, N) ``scores`` among ``valid`` ones."""
        if self.num_outliers != 'auto':
            return Outliers.top_k(scores, self.num_outliers, grid, valid)
        median = scores.median(dim=1, keepdim=True).values
        mad = (scores - median).abs().median(dim=1, keepdim=True).values * 1.4826
        tiny = torch.finfo(scores.dtype).tiny
        adaptive = scores > median + self.auto_z * mad.clamp_min(tiny)
        valid = adaptive if valid is None else valid & adaptive
        limit = max(1, int(self.auto_max_fraction * scores.shape[1]))
        return Outliers.top_k(scores, limit, grid, valid)
