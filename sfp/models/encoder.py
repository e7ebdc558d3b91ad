"""SFP's image encoder: a CLIP ViT run block by block with the method's parts plugged in
at its hook points."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..clip.model import VisionTransformer
from .detectors import OutlierDetector
from .enhancer import SemanticAwareAttentionEnhancer
from .guidance import aggregate, guidance_attention, guidance_similarity
from .integrator import HierarchicalIntegrator
from .mitigation import NeighbourMeanMitigation
from .outliers import Outliers


@dataclass
class EncoderOutput:
    """Patch features of a batch of crops and the outliers found in them.

    Attributes:
        features: (B, N, D) patch features in CLIP's joint space (not normalised).
        outliers: outliers found at the detection block (None without a detector).
        grid: patch grid (rows, cols).
    """

    features: torch.Tensor
    outliers: Optional[Outliers]
    grid: Tuple[int, int]


class SFPEncoder(nn.Module):
    """A CLIP ViT with outlier detection and mitigation, the semantic-aware attention
    enhancer and the hierarchical integrator.

    Blocks 1..L-1 run unchanged (only the detection block materialises attention
    weights, and only when the detector reads them).  Then, per crop: detect outliers
    on the ``detect_block`` output; mitigate them in the block L-1 patches and in the
    ``pre_guidance_block`` patches; build guidance similarities from those (S_pre) and
    from the ``post_guidance_block`` patches (S_post); aggregate with S_pre, run the
    enhancer with the last block, aggregate with S_post; add the integrator branch;
    project with ln_post and the visual projection.  Block numbers count from 1.

    Args:
        visual: the CLIP ViT image tower (its weights are used as they are).
        detector: outlier detector, or None to skip detection and mitigation.
        mitigation: replaces outlier tokens (default: neighbour mean).
        enhancer: step 6, or None to skip it (an ablation).
        integrator: step 8, or None to drop the hierarchical branch (an ablation).
        detect_block: block whose output the detector reads (default L-1).
        pre_guidance_block: block of S_pre (default 9).
        post_guidance_block: block of S_post (default 4).
        similarity_threshold: similarities below it are zeroed (default 0.4).
        guidance_scale: the factor in G = scale * (S_pre - mean) (default 3).
        stream_mitigation_blocks: blocks after which outliers are also detected and
            mitigated inside the forward stream, so later blocks see purified tokens
            (the paper's "at each layer"; empty = the release's behaviour).
    """

    def __init__(self,
                 visual: VisionTransformer,
                 detector: Optional[OutlierDetector] = None,
                 mitigation: Optional[nn.Module] = None,
                 enhancer: Optional[SemanticAwareAttentionEnhancer] = None,
                 integrator: Optional[HierarchicalIntegrator] = None,
                 detect_block: Optional[int] = None,
                 pre_guidance_block: int = 9,
                 post_guidance_block: int = 4,
                 similarity_threshold: float = 0.4,
                 guidance_scale: float = 3.0,
                 stream_mitigation_blocks: Sequence[int] = ()):
        super().__init__()
        self.visual = visual
        self.detector = detector
        self.mitigation = mitigation if mitigation is not None else NeighbourMeanMitigation()
        self.enhancer = enhancer
        self.integrator = integrator
        last = visual.num_blocks - 1  # the final block is replaced by SFP's branches
        self.detect_block = last if detect_block is None else detect_block
        self.pre_guidance_block = pre_guidance_block
        self.post_guidance_block = post_guidance_block
        self.similarity_threshold = similarity_threshold
        self.guidance_scale = guidance_scale
        self.stream_mitigation_blocks = tuple(sorted(set(stream_mitigation_blocks)))
        checked = {'detect_block': self.detect_block, 'pre_guidance_block': pre_guidance_block,
                   'post_guidance_block': post_guidance_block}
        checked.update({f'stream_mitigation_blocks[{i}]': b
                        for i, b in enumerate(self.stream_mitigation_blocks)})
        if integrator is not None:
            checked.update({'integrator first block': integrator.blocks[0],
                            'integrator last block': integrator.blocks[1]})
        for name, block in checked.items():
            if not 1 <= block <= last:
                raise ValueError(f'{name} = {block}: must be a block from 1 to {last} of this '
                                 f'{visual.num_blocks}-block ViT (the last block is SFP\'s)')
        if self.stream_mitigation_blocks and detector is None:
            raise ValueError('stream_mitigation_blocks needs an outlier detector')

    def _wants_attention(self, block: int) -> bool:
        return (self.detector is not None and self.detector.needs_attention
                and (block == self.detect_block or block in self.stream_mitigation_blocks))

    def _purify(self, tokens: torch.Tensor, attention: Optional[torch.Tensor],
                grid: Tuple[int, int]) -> Tuple[torch.Tensor, Outliers]:
        """Detect outliers in (B, 1+N, C) tokens and mitigate them in the patches."""
        outliers = self.detector(tokens, attention, grid)
        patches = self.mitigation(tokens[:, 1:], outliers.mask(), grid)
        return torch.cat([tokens[:, :1], patches], dim=1), outliers

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """Encode a batch of equally sized crops (B, 3, H, W), CLIP-normalised."""
        grid = self.visual.grid_size(*images.shape[-2:])
        x = self.visual.embed(images)  # (B, 1 + N, C)
        last = self.visual.num_blocks - 1
        summed = pre = post = detected = attention = None
        for index, block in enumerate(self.visual.blocks[:last], start=1):
            if self._wants_attention(index):
                x, attention = block.forward_with_weights(x)
            else:
                x, attention = block(x), None
            if index == self.detect_block:
                detected = (x, attention)
            if index in self.stream_mitigation_blocks:
                x, _ = self._purify(x, attention, grid)
            if self.integrator is not None and self.integrator.uses_block(index):
                summed = x if summed is None else summed + x
            if index == self.pre_guidance_block:
                pre = x[:, 1:]
            if index == self.post_guidance_block:
                post = x[:, 1:]

        cls, patches = x[:, :1], x[:, 1:]
        outliers = None
        if self.detector is not None:
            outliers = self.detector(detected[0], detected[1], grid)
            mask = outliers.mask()
            patches = self.mitigation(patches, mask, grid)
            pre = self.mitigation(pre, mask, grid)

        s_pre = guidance_similarity(pre, self.similarity_threshold)  # (B, N, N)
        s_post = guidance_similarity(post, self.similarity_threshold)
        guide = guidance_attention(s_pre, self.guidance_scale)
        final_block = self.visual.blocks[last]
        patches = aggregate(patches, s_pre)
        if self.enhancer is not None:
            patches = self.enhancer(final_block, patches, cls, guide)
        patches = aggregate(patches, s_post)
        if self.integrator is not None:
            patches = patches + aggregate(self.integrator(final_block, summed, guide), s_post)
        return EncoderOutput(self.visual.project(patches), outliers, grid)
