"""SFP (Jin et al., ICCV 2025): purified guidance, the semantic-aware attention enhancer
and the hierarchical integrator in place of the last block."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..clip.model import VisionTransformer
from ..models.detectors import OutlierDetector
from ..models.encoder import BlockWalk, MethodEncoder, PartConfig, build_part
from ..models.enhancer import SemanticAwareAttentionEnhancer
from ..models.guidance import aggregate, guidance_attention, guidance_similarity
from ..models.integrator import HierarchicalIntegrator
from ..registry import ENCODERS

#: ``enhancer`` / ``integrator`` left at this: SFP's own, built from ``res_cls``,
#: ``cross_s`` and ``cross_e`` (None drops the part instead: an ablation).
SFP_PART = 'sfp'


@ENCODERS.register_module(name=['SFPEncoder', 'sfp'])
class SFPEncoder(MethodEncoder):
    """A CLIP ViT with outlier detection and mitigation, the semantic-aware attention
    enhancer and the hierarchical integrator.

    After the shared walk (blocks 1..L-1; outliers detected on the ``detect_block``
    output and mitigated in the block L-1 patches), per crop: mitigate the same outliers
    in the ``pre_guidance_block`` patches; build guidance similarities from those (S_pre)
    and from the ``post_guidance_block`` patches (S_post); aggregate with S_pre, run the
    enhancer with the last block, aggregate with S_post; add the integrator branch.
    Block numbers count from 1.

    Args:
        visual: the CLIP ViT image tower (its weights are used as they are).
        detector: outlier detector, or None to skip detection and mitigation.
        mitigation: replaces outlier tokens (default: neighbour mean).
        enhancer: step 6 (a module or config dict), or None to skip it (an ablation);
            by default SFP's, with ``res_cls``.
        integrator: step 8 (a module or config dict), or None to drop the hierarchical
            branch (an ablation); by default SFP's over blocks ``cross_s + 1 .. cross_e``
            with ``res_cls``.
        detect_block: block whose output the detector reads (default L-1).
        pre_guidance_block: block of S_pre (default 9).
        post_guidance_block: block of S_post (default 4).
        similarity_threshold: similarities below it are zeroed (default 0.4).
        guidance_scale: the factor in G = scale * (S_pre - mean) (default 3).
        stream_mitigation_blocks: blocks after which outliers are also detected and
            mitigated inside the forward stream, so later blocks see purified tokens
            (the paper's "at each layer"; empty = the release's behaviour).
        res_cls: weight of the CLS residual in the enhancer and the integrator (the
            release's ``res_cls``).
        cross_s, cross_e: the integrator sums blocks ``cross_s + 1 .. cross_e`` (the
            release's names).
    """

    purify_by_default = True

    def __init__(self,
                 visual: VisionTransformer,
                 detector: Union[OutlierDetector, str, dict, None] = None,
                 mitigation: PartConfig = None,
                 enhancer: Union[PartConfig, str] = SFP_PART,
                 integrator: Union[PartConfig, str] = SFP_PART,
                 detect_block: Optional[int] = None,
                 pre_guidance_block: int = 9,
                 post_guidance_block: int = 4,
                 similarity_threshold: float = 0.4,
                 guidance_scale: float = 3.0,
                 stream_mitigation_blocks: Sequence[int] = (),
                 res_cls: float = 0.3,
                 cross_s: int = 3,
                 cross_e: int = 10):
        if isinstance(enhancer, str) and enhancer == SFP_PART:
            enhancer = SemanticAwareAttentionEnhancer(cls_residual=res_cls)
        if isinstance(integrator, str) and integrator == SFP_PART:
            integrator = HierarchicalIntegrator((cross_s + 1, cross_e), res_cls)
        enhancer = build_part(enhancer, SemanticAwareAttentionEnhancer)
        integrator = build_part(integrator, HierarchicalIntegrator)
        super().__init__(visual, detector, mitigation, detect_block, stream_mitigation_blocks,
                         kept_blocks=(pre_guidance_block, post_guidance_block),
                         summed_blocks=integrator.blocks if integrator is not None else None)
        self.check_blocks({'pre_guidance_block': pre_guidance_block,
                           'post_guidance_block': post_guidance_block})
        self.enhancer = enhancer
        self.integrator = integrator
        self.pre_guidance_block = pre_guidance_block
        self.post_guidance_block = post_guidance_block
        self.similarity_threshold = similarity_threshold
        self.guidance_scale = guidance_scale

    def head(self, walk: BlockWalk) -> torch.Tensor:
        cls, patches = walk.tokens[:, :1], walk.tokens[:, 1:]
        pre = walk.outputs[self.pre_guidance_block][:, 1:]
        if walk.outliers is not None:
            pre = self.mitigation(pre, walk.outliers.mask(), walk.grid)
        post = walk.outputs[self.post_guidance_block][:, 1:]
        s_pre = guidance_similarity(pre, self.similarity_threshold)  # (B, N, N)
        s_post = guidance_similarity(post, self.similarity_threshold)
        guide = guidance_attention(s_pre, self.guidance_scale)
        patches = aggregate(patches, s_pre)
        if self.enhancer is not None:
            patches = self.enhancer(self.last_block, patches, cls, guide)
        patches = aggregate(patches, s_post)
        if self.integrator is not None:
            patches = patches + aggregate(
                self.integrator(self.last_block, walk.summed, guide), s_post)
        return patches
