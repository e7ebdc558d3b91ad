"""MaskCLIP (Zhou et al., ECCV 2022), as the ClearCLIP release runs it
(``model_type='MaskCLIP'``)."""
from typing import Tuple

import torch

from ..clip.model import ResidualAttentionBlock
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['MaskCLIPEncoder', 'maskclip'])
class MaskCLIPEncoder(LastBlockAttentionEncoder):
    """Identity attention (each token its own value), no residual, no FFN."""

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        return block.attn.project_v(hidden)
