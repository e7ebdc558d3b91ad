"""Hierarchical attention integrator: a multi-block branch through the guided attention
(SFP step 8)."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..clip.model import ResidualAttentionBlock
from ..registry import ENCODER_PARTS


@ENCODER_PARTS.register_module()
class HierarchicalIntegrator(nn.Module):
    """Sum of the outputs of ``blocks`` (1-based, inclusive), passed through the last
    block's value and output projections with the guidance attention only:
    H_p <- out_proj(A_g V(ln_1(H_p))) + ``cls_residual`` * H_cls.
    """

    def __init__(self, blocks: Tuple[int, int] = (4, 10), cls_residual: float = 0.3):
        super().__init__()
        first, last = blocks
        if not 1 <= first <= last:
            raise ValueError(f'integrator blocks must satisfy 1 <= first <= last, got {blocks}')
        self.blocks = (first, last)
        self.cls_residual = cls_residual

    def uses_block(self, index: int) -> bool:
        return self.blocks[0] <= index <= self.blocks[1]

    def forward(self, block: ResidualAttentionBlock, summed: torch.Tensor,
                guidance: torch.Tensor) -> torch.Tensor:
        """
        Args:
            block: the ViT's last block.
            summed: (B, 1 + N, C) sum of the integrated blocks' outputs, CLS first.
            guidance: (B, N, N) guidance attention A_g.
        Returns:
            (B, N, C).
        """
        v = block.attn.project_v(block.ln_1(summed[:, 1:]))  # (B, h, N, d)
        mixed = guidance.unsqueeze(1).to(v.dtype) @ v
        return block.attn.merge_heads(mixed) + self.cls_residual * summed[:, :1]
