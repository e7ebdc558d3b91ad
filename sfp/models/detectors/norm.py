"""Norm-based detector: outlier tokens carry abnormally large activations."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ...registry import OUTLIER_DETECTORS
from ..outliers import Outliers
from .base import RankingDetector


@OUTLIER_DETECTORS.register_module(name='L2')
class L2NormDetector(RankingDetector):
    """The ``num_outliers`` patch tokens of largest L2 norm, largest first (the
    high-norm artefact tokens of "Vision Transformers Need Registers")."""

    def forward(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Outliers:
        return self.select(tokens[:, 1:].norm(dim=-1), grid)
