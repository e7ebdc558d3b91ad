"""CLIP (Radford et al., 2021): the original last block, as the ClearCLIP release runs it
with ``model_type='vanilla'`` and ``ignore_residual=False``."""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..clip.model import ResidualAttentionBlock
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['CLIPEncoder', 'clip'])
class CLIPEncoder(LastBlockAttentionEncoder):
    """q-k softmax attention with residual and FFN: CLIP's own patch tokens."""

    keep_residual = True

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        q, k, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(q, k, v)
