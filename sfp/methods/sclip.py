"""SCLIP (Wang et al., ECCV 2024, arXiv 2312.01597), release wangf3014/SCLIP@b56bd30."""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..clip.model import ResidualAttentionBlock
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['SCLIPEncoder', 'sclip'])
class SCLIPEncoder(LastBlockAttentionEncoder):
    """Correlative self-attention softmax(q q^T) + softmax(k k^T) (summed, not halved),
    in a last block that keeps its residual and FFN."""

    keep_residual = True

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        q, k, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
