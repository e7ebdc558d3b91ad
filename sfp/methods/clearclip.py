"""ClearCLIP (Lan et al., ECCV 2024, arXiv 2407.12442), release mc-lan/ClearCLIP@ad68a40."""
import torch.nn.functional as F

from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['ClearCLIPEncoder', 'clearclip'])
class ClearCLIPEncoder(LastBlockAttentionEncoder):
    """q-q softmax attention, no residual, no FFN."""

    def attention(self, block, hidden, grid):
        q, _, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(q, q, v)
