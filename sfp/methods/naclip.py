"""NACLIP (Hajimiri et al., WACV 2025, arXiv 2404.08181), release sinahmr/NACLIP@0cac3a6."""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..clip.model import ResidualAttentionBlock, VisionTransformer
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


def neighbourhood_bias(grid: Tuple[int, int], std: float) -> torch.Tensor:
    """(1 + N, 1 + N) float64 additive attention bias: exp(-d^2 / (2 std^2)) between
    patches at grid distance d (in patches), 0 in the CLS row and column."""
    rows, cols = grid
    r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)
    c = torch.arange(cols, dtype=torch.float64).repeat(rows)
    squared = (r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2  # (N, N)
    bias = torch.zeros(rows * cols + 1, rows * cols + 1, dtype=torch.float64)
    bias[1:, 1:] = torch.exp(-squared / (2 * std ** 2))
    return bias


@ENCODERS.register_module(name=['NACLIPEncoder', 'naclip'])
class NACLIPEncoder(LastBlockAttentionEncoder):
    """k-k attention plus a Gaussian neighbourhood bias on the logits (after the
    1/sqrt(d) scale), no residual, no FFN (the release's "reduced" architecture).

    Args:
        gaussian_std: the Gaussian's standard deviation in patches.
    """

    def __init__(self, visual: VisionTransformer, gaussian_std: float = 5.0, **kwargs):
        super().__init__(visual, **kwargs)
        self.gaussian_std = gaussian_std

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        _, k, v = block.attn.project_qkv(hidden)
        bias = neighbourhood_bias(grid, self.gaussian_std).to(device=k.device, dtype=k.dtype)
        return F.scaled_dot_product_attention(k, k, v, attn_mask=bias)
