"""Looking inside SFP: attention, token norms, outliers, purified similarities.

:func:`analyze_image` runs one crop of an image through the CLIP ViT with every block's
attention materialised (analysis only; inference never does this) and gathers what the
paper's figures show: per-block CLS-to-patch attention and token norms, the outliers
each detector finds, the block-9 guidance similarities before and after purification,
and the final segmentation of the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .apis import prepare_image, segment_images
from .models import SFPSegmentor, build_detector, guidance_similarity, mitigate_outliers

DEFAULT_DETECTORS = ('SOM', 'L2', 'LOF', 'DBSCAN', 'KMeans', 'cls_attn')


@dataclass
class OutlierAnalysis:
    """What :func:`analyze_image` found.  Blocks count from 1 (index i is block i + 1).

    Attributes:
        crop: (h, w, 3) RGB uint8 crop that was analysed (after resizing the image).
        grid: its patch grid (rows, cols).
        cls_attention: (L, rows, cols) head-averaged CLS-to-patch attention per block.
        token_norms: (L, rows, cols) L2 norm of each block's output patch tokens.
        outliers: detector name -> (row, col) outliers at the detection block.
        detect_block: the block the detectors read.
        similarity_raw: (N, N) thresholded cosine similarity of the guidance block's
            patches as they are.
        similarity_purified: the same after mitigating the segmentor's own detector's
            outliers (what SFP uses).
        labels: (H, W) segmentation of the whole image at its own size.
        class_names: display name of each label.
    """

    crop: np.ndarray
    grid: Tuple[int, int]
    cls_attention: torch.Tensor
    token_norms: torch.Tensor
    outliers: Dict[str, List[Tuple[int, int]]]
    detect_block: int
    similarity_raw: torch.Tensor
    similarity_purified: torch.Tensor
    labels: np.ndarray
    class_names: List[str]

    def similarity_map(self, row: int, col: int, purified: bool = True) -> torch.Tensor:
        """(rows, cols) similarity of every patch to patch (row, col)."""
        sim = self.similarity_purified if purified else self.similarity_raw
        return sim[row * self.grid[1] + col].view(self.grid)


def center_crop(image: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """(3, H, W) -> central (3, min(size, H), min(size, W)) crop; None keeps all."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
    return image[:, top:top + size, left:left + size]


@torch.no_grad()
def analyze_image(segmentor: SFPSegmentor, image_bgr: np.ndarray,
                  detectors: Sequence = DEFAULT_DETECTORS, crop: Optional[int] = 224,
                  short_side: int = 336) -> OutlierAnalysis:
    """Analyse the central ``crop`` of an image resized to ``short_side`` (see module doc).

    Args:
        segmentor: supplies the CLIP ViT, the block choices and the final segmentation.
        image_bgr: (H, W, 3) uint8 BGR image (e.g. from :func:`sfp.datasets.read_image`).
        detectors: names or configs of the detectors to compare.
        crop: side of the analysed crop (224 is one sliding window); None for the whole
            resized image.
    """
    encoder = segmentor.encoder
    visual = encoder.visual
    device = segmentor.query_features.device
    prepared = center_crop(prepare_image(image_bgr, short_side), crop)
    x = segmentor.data_preprocessor(dict(inputs=[prepared]), False)['inputs']
    x = x.to(device=device, dtype=segmentor.dtype)  # (1, 3, h, w), CLIP-normalised RGB
    grid = visual.grid_size(*x.shape[-2:])
    tokens = visual.embed(x)
    cls_attention, norms, outputs, attentions = [], [], [], []
    for block in visual.blocks:
        tokens, attention = block.forward_with_weights(tokens)
        cls_attention.append(attention.mean(1)[0, 0, 1:].view(grid).float().cpu())
        norms.append(tokens[0, 1:].norm(dim=-1).view(grid).float().cpu())
        outputs.append(tokens)
        attentions.append(attention)
    index = encoder.detect_block - 1
    found = {}
    for cfg in detectors:
        name = cfg if isinstance(cfg, str) else cfg['type']
        found[name] = build_detector(cfg)(outputs[index], attentions[index], grid).positions(0)
    guidance = outputs[encoder.pre_guidance_block - 1][:, 1:]
    raw = guidance_similarity(guidance, encoder.similarity_threshold)[0]
    purified = raw
    if encoder.detector is not None:
        mask = encoder.detector(outputs[index], attentions[index], grid).mask()
        purified = guidance_similarity(mitigate_outliers(guidance, mask, grid),
                                       encoder.similarity_threshold)[0]
    prediction = segment_images(segmentor, [image_bgr], short_side)[0]
    return OutlierAnalysis(
        crop=prepared.flip(0).permute(1, 2, 0).numpy(), grid=grid,
        cls_attention=torch.stack(cls_attention), token_norms=torch.stack(norms),
        outliers=found, detect_block=encoder.detect_block,
        similarity_raw=raw.float().cpu(), similarity_purified=purified.float().cpu(),
        labels=prediction.pred_sem_seg.data[0].cpu().numpy(),
        class_names=list(segmentor.class_names))
