"""LPOSS and LPOSS+ (Stojnic et al., CVPR 2025, arXiv 2503.19777), release
vladan-stojnic/LPOSS@e489a74: CLIP's patch predictions propagated over a kNN graph of DINO
ViT-B/16 features of all the image's windows, then (LPOSS+) over the image's pixels.

The CLIP side is CLIP-DINOiser's MaskCLIP: the last block's attention is the identity
(each token its own value), its residual and MLP kept.  The release hands each tower 0..1
RGB and normalises it with the tower's own constants; this encoder does the same from
the segmentor's CLIP-normalised input.  The propagation is the segmentor's
``propagation`` refiner (:class:`sfp.models.propagation.LabelPropagation`), which any
method can use.
"""
from __future__ import annotations

import torch

from ..models.data_preprocessor import unit_rgb
from ..models.encoder import BlockWalk
from ..registry import ENCODERS
from .maskclip import MaskCLIPEncoder
from .proxyclip import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD


def clip_view(images: torch.Tensor) -> torch.Tensor:
    """Segmentor-normalised (B, 3, H, W) images as the release's CLIP sees them: 0..1 RGB
    normalised with CLIP's 0..1 constants (torchvision's ``Normalize``)."""
    def channels(values):
        return torch.tensor(values, dtype=images.dtype, device=images.device).view(3, 1, 1)

    return (unit_rgb(images) - channels(CLIP_PIXEL_MEAN)) / channels(CLIP_PIXEL_STD)


@ENCODERS.register_module(name=['LPOSSEncoder', 'lposs'])
class LPOSSEncoder(MaskCLIPEncoder):
    """MaskCLIP with the last block's residual and MLP kept (``keep_residual``), on the
    release's CLIP input (:func:`clip_view`).  Purification (``purify``) works as for
    every method; the release has none."""

    keep_residual = True

    def walk(self, images: torch.Tensor) -> BlockWalk:
        return super().walk(clip_view(images))
