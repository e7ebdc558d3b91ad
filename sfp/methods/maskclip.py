"""MaskCLIP (Zhou et al., ECCV 2022), as the ClearCLIP release runs it
(``model_type='MaskCLIP'``)."""
from ..models.encoder import LastBlockAttentionEncoder
from ..registry import ENCODERS


@ENCODERS.register_module(name=['MaskCLIPEncoder', 'maskclip'])
class MaskCLIPEncoder(LastBlockAttentionEncoder):
    """Identity attention (each token its own value), no residual, no FFN."""

    def attention(self, block, hidden, grid):
        return block.attn.project_v(hidden)
