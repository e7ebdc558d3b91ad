"""ClearCLIP (Lan et al., ECCV 2024, arXiv 2407.12442), release mc-lan/ClearCLIP@ad68a40."""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..clip.model import ResidualAttentionBlock
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['ClearCLIPEncoder', 'clearclip'])
class ClearCLIPEncoder(LastBlockAttentionEncoder):
    """q-q softmax attention, no residual, no FFN."""

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        q, _, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(q, q, v)
