"""Norm-based detector: outlier tokens carry abnormally large activations."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import OutlierDetector


@OUTLIER_DETECTORS.register_module(name='L2')
class L2NormDetector(OutlierDetector):
    """The ``num_outliers`` patch tokens of largest L2 norm, largest first (the
    high-norm artefact tokens of "Vision Transformers Need Registers")."""

    def __init__(self, num_outliers: int = 10):
        super().__init__()
        self.num_outliers = num_outliers

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        return Outliers.top_k(tokens[:, 1:].norm(dim=-1), self.num_outliers, grid)
