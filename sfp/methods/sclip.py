"""SCLIP (Wang et al., ECCV 2024, arXiv 2312.01597), release wangf3014/SCLIP@b56bd30."""
import torch.nn.functional as F

from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['SCLIPEncoder', 'sclip'])
class SCLIPEncoder(LastBlockAttentionEncoder):
    """Correlative self-attention softmax(q q^T) + softmax(k k^T) (summed, not halved),
    in a last block that keeps its residual and FFN."""

    keep_residual = True

    def attention(self, block, hidden, grid):
        q, k, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
