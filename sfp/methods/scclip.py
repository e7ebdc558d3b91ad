"""SC-CLIP (Bai et al., arXiv 2411.15869), release SuleBai/SC-CLIP@0417ba9."""
from __future__ import annotations

from typing import Tuple

import torch

from ..clip.model import VisionTransformer
from ..models.detectors import LOFDetector
from ..models.encoder import BlockWalk, MethodEncoder
from ..models.enhancer import SemanticAwareAttentionEnhancer
from ..models.guidance import aggregate, guidance_attention, guidance_similarity
from ..models.mitigation import mitigate_outliers
from ..models.outliers import Outliers
from ..registry import ENCODERS


@ENCODERS.register_module(name=['SCCLIPEncoder', 'scclip'])
class SCCLIPEncoder(MethodEncoder):
    """Self-calibrated CLIP: anomalous tokens resolved, similarity-guided aggregation and
    multi-level fusion.

    Per crop, with F_i the output of block i and L the last block: LOF on the patches of
    F_{L-1} picks anomalous tokens, which are replaced by the mean of their clean
    neighbours in F_{L-1} and in F_``guidance_block`` (an isolated one keeps its value).
    S_mid is the cosine similarity of the resolved guidance patches, S_pre and S_post
    (from F_``post_guidance_block``) the same with entries below ``beta`` zeroed.  The last
    block's attention is [softmax(G) + softmax(K K^T / sqrt(d))] / 2 with
    G = ``guidance_scale`` (S_mid - mean), negative entries masked; it is applied to the
    S_pre-aggregated resolved patches (plus ``res_cls`` x CLS) and to the patches of
    F_first + ... + F_last of ``fusion_blocks`` (plus ``res_cls`` x their CLS sum); both
    are aggregated with S_post and summed.

    Args:
        guidance_block: block of S_mid (release: ``pre_adjust_idx`` 8, 0-based).
        post_guidance_block: block of S_post (``post_adjust_idx`` 3).
        fusion_blocks: (first, last) inclusive (``multi_start_idx`` 3 to
            ``multi_end_idx`` 10, exclusive and 0-based).
        res_cls: CLS weight.  beta: similarity threshold.
        guidance_scale: the factor in G.
        n_neighbors, contamination: the LOF detector's settings.
        **kwargs: :class:`MethodEncoder` arguments (purification before the LOF step).
    """

    def __init__(self, visual: VisionTransformer, guidance_block: int = 9,
                 post_guidance_block: int = 4, fusion_blocks: Tuple[int, int] = (4, 10),
                 res_cls: float = 0.3, beta: float = 0.4, guidance_scale: float = 3.0,
                 n_neighbors: int = 30, contamination: float = 0.05, **kwargs):
        super().__init__(visual, kept_blocks=(guidance_block, post_guidance_block),
                         summed_blocks=tuple(fusion_blocks), **kwargs)
        self.check_blocks({'guidance_block': guidance_block,
                           'post_guidance_block': post_guidance_block})
        self.guidance_block = guidance_block
        self.post_guidance_block = post_guidance_block
        self.beta = beta
        self.guidance_scale = guidance_scale
        self.anomaly_detector = LOFDetector(n_neighbors, contamination)
        self.guided_attention = SemanticAwareAttentionEnhancer(res_cls, terms=('guidance', 'kk'))

    def anomalies(self, tokens: torch.Tensor, grid: Tuple[int, int]) -> Outliers:
        """The anomalous patches of (B, 1 + N, C) block L-1 outputs, in patch order."""
        return self.anomaly_detector(tokens, None, grid)

    def head(self, walk: BlockWalk) -> torch.Tensor:
        grid, tokens = walk.grid, walk.tokens
        anomalous = self.anomalies(tokens, grid).mask()
        patches = mitigate_outliers(tokens[:, 1:], anomalous, grid, keep_isolated=True)
        middle = mitigate_outliers(walk.outputs[self.guidance_block][:, 1:], anomalous, grid,
                                   keep_isolated=True)
        s_mid = guidance_similarity(middle, float('-inf'))  # (B, N, N), not thresholded
        s_pre = s_mid.masked_fill(s_mid < self.beta, 0.0)
        s_post = guidance_similarity(walk.outputs[self.post_guidance_block][:, 1:], self.beta)
        guide = guidance_attention(s_mid, self.guidance_scale)
        block = self.last_block
        main = self.guided_attention(block, aggregate(patches, s_pre), tokens[:, :1], guide)
        fused = self.guided_attention(block, walk.summed[:, 1:], walk.summed[:, :1], guide)
        return aggregate(main, s_post) + aggregate(fused, s_post)
