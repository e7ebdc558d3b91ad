"""LaVG, "In Defense of Lazy Visual Grounding for Open-Vocabulary Semantic Segmentation"
(Kang & Cho, ECCV 2024, arXiv 2408.04961), release dahyun-kang/lavg@2db88e5.

Stage 1, class-agnostic object masks per image (LaVG's panoptic cut: NCut on DINO ViT-B/8
keys and a dense CRF), is a mask generator of the masks stage
(:class:`sfp.masks.PanopticCut`; files from ``tools/generate_masks.py`` or run on the
fly).  Stage 2, here, is "lazy visual grounding": SCLIP's CLIP, whose pixel features are
averaged within each object mask.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from ..clip.model import VisionTransformer
from ..masks import RegionMasks
from ..models.encoder import EncoderOutput
from ..registry import ENCODERS
from .sclip import SCLIPEncoder


def ground_in_regions(logits: torch.Tensor, regions: RegionMasks) -> torch.Tensor:
    """Every pixel of a region gets the region's mean logits: (Q, H, W) -> (Q, H, W).

    The regions' layers, then the pixels in none of them (LaVG's background mask) as one
    more region; a layer's mean is over all its pixels, also those it shares with an
    earlier layer, and where layers overlap the earlier one wins (the release paints
    them from the last to the first).  Logits are linear in the features, so the mean of
    the logits is the logits of the mean feature (the release's order of operations)."""
    layers = torch.cat([regions.masks(), regions.unsegmented()[None]])  # (K + 1, H, W)
    flat = layers.flatten(1).to(logits.dtype)
    counts = flat.sum(1, keepdim=True)
    means = (flat @ logits.flatten(1).t()) / counts.clamp(min=1)  # (K + 1, Q)
    first = layers.int().argmax(0)  # every pixel is in some layer
    return means[first].permute(2, 0, 1)


@ENCODERS.register_module(name=['LaVGEncoder', 'lavg'])
class LaVGEncoder(SCLIPEncoder):
    """LaVG's stage 2 on each crop (``uses_masks``: the segmentor hands it the crop's
    window of the image's object masks at the input size).

    - CLIP with SCLIP's last block (correlative self-attention, residual and MLP kept);
      every patch feature L2-normalised, the cosine logits with the queries upsampled
      bilinearly to the crop's pixels (the release upsamples the normalised features;
      the same up to rounding, logits being linear in them).
    - :func:`ground_in_regions`: each object mask's pixels get the mask's mean.
    - ``remove_falsefg`` (the release's VOC21 rule): in the background mask, every query
      from the first of class 1 on is set to the crop's smallest logit, so that only
      background names can win there.

    Logits come out at the crop's pixels (``logit_stride`` 1).

    Args:
        visual: the CLIP ViT image tower.
        query_features, query_idx: the vocabulary (filled in by the segmentor).
        remove_falsefg: as above (the release derives it from the class file's path
            containing 'voc21'; its configs here set it).
        **kwargs: purification (:class:`~sfp.models.encoder.MethodEncoder`); the release
            has none.
    """

    uses_vocabulary = True
    uses_masks = True

    def __init__(self, visual: VisionTransformer, query_features: torch.Tensor,
                 query_idx: torch.Tensor, remove_falsefg: bool = False, **kwargs):
        super().__init__(visual, **kwargs)
        self.register_buffer('query_features', query_features, persistent=False)
        self.remove_falsefg = remove_falsefg
        # The first query of class 1: the queries before it name the background.
        self.background_queries = int((query_idx == 0).sum())

    @property
    def logit_stride(self) -> int:
        return 1

    def working_set(self, height: int, width: int) -> int:
        """The base estimate plus the crop's pixel logits (and their grounded copy)."""
        return super().working_set(height, width) + 3 * len(self.query_features) * height * width

    def pixel_logits(self, features: torch.Tensor, grid: Sequence[int],
                     size: Sequence[int]) -> torch.Tensor:
        """(B, N, D) patch features -> (B, Q, H, W) cosine logits at the crop's pixels."""
        normed = features / features.norm(dim=-1, keepdim=True)
        logits = (normed @ self.query_features.t()).transpose(1, 2)
        logits = logits.reshape(len(features), -1, *grid)
        return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)

    def forward(self, images: torch.Tensor, contexts: Optional[Sequence[Any]] = None,
                regions: Optional[Sequence[RegionMasks]] = None) -> EncoderOutput:
        if regions is None or any(r is None for r in regions):
            raise ValueError('LaVG grounds its features in object masks: give each crop its '
                             'regions (the segmentor does, from its masks)')
        walk = self.walk(images)
        features = self.visual.project(self.head(walk))
        size = tuple(images.shape[-2:])
        logits = self.pixel_logits(features, walk.grid, size)
        grounded = []
        for crop_logits, crop_regions in zip(logits, regions):
            crop_regions.check_size(size, 'the regions of a crop')
            crop = ground_in_regions(crop_logits, crop_regions)
            if self.remove_falsefg:
                background = crop_regions.unsegmented()
                crop[self.background_queries:, background] = crop.min()
            grounded.append(crop)
        return EncoderOutput(features, walk.outliers, walk.grid, logits=torch.stack(grounded))
