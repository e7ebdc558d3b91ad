"""The interface every outlier detector implements."""
from __future__ import annotations

from typing import Optional, Tuple

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
