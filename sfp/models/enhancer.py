"""Semantic-aware attention enhancer: the last block's attention rebuilt from purified
similarities (SFP step 6)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import ResidualAttentionBlock
from ..registry import ENCODER_PARTS

ATTENTION_TERMS = ('qq', 'kk', 'vv', 'guidance')


@ENCODER_PARTS.register_module()
class SemanticAwareAttentionEnhancer(nn.Module):
    """Attention-only pass of the last block with self-self and guided attention.

    W = [softmax(Q Q^T / sqrt(d)) + softmax(K K^T / sqrt(d)) + A_g] / 3 per head, where
    A_g = softmax(G) comes from the purified block-9 similarities and is shared by every
    head; the output is out_proj(W V) + ``cls_residual`` * CLS (no residual, no MLP).

    Args:
        cls_residual: weight of the CLS token added to the output.
        terms: the attentions averaged, among 'qq', 'kk', 'vv' (softmax(V V^T / sqrt(d)),
            the paper's supplementary Table 1) and 'guidance' (SFP: 'qq', 'kk' and
            'guidance'; SC-CLIP: 'guidance' and 'kk').
    """

    def __init__(self, cls_residual: float = 0.3,
                 terms: Sequence[str] = ('qq', 'kk', 'guidance')):
        super().__init__()
        unknown = [t for t in terms if t not in ATTENTION_TERMS]
        if unknown or not terms:
            raise ValueError(f'enhancer terms must be a non-empty subset of {ATTENTION_TERMS}, '
                             f'got {tuple(terms)}')
        self.cls_residual = cls_residual
        self.terms = tuple(terms)

    def forward(self, block: ResidualAttentionBlock, patches: torch.Tensor, cls: torch.Tensor,
                guidance: torch.Tensor) -> torch.Tensor:
        """
        Args:
            block: the ViT's last block (its ln_1 and attention projections are used).
            patches: (B, N, C) purified, aggregated patch tokens.
            cls: (B, 1, C) CLS token of the detection block.
            guidance: (B, N, N) guidance attention A_g.
        Returns:
            (B, N, C).
        """
        q, k, v = block.attn.project_qkv(block.ln_1(patches))  # (B, h, N, d) each
        # Self-self attentions through the fused kernel, A_g V for all heads.
        outputs = dict(qq=lambda: F.scaled_dot_product_attention(q, q, v),
                       kk=lambda: F.scaled_dot_product_attention(k, k, v),
                       vv=lambda: F.scaled_dot_product_attention(v, v, v),
                       guidance=lambda: guidance.unsqueeze(1).to(v.dtype) @ v)
        mixed = sum(outputs[t]() for t in self.terms) / len(self.terms)
        return block.attn.merge_heads(mixed) + self.cls_residual * cls
