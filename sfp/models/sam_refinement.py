"""Label refinement with SAM prompts, as Trident's release does it (``sam_refinement``).

At half resolution, every class's connected regions (8-connectivity) of at least
``minimal_area`` pixels become prompts: the region's box, its most probable pixel, and the
class's probability map as a mask prompt.  SAM's masks whose predicted IoU passes
``sam_iou_thresh`` replace the coarse labels where they cover the image; the regions SAM
failed on keep their probabilities.  Every step and quirk is in ``docs/methods/trident.md``
(step 12 of the release's pipeline).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: The release's constants: the half resolution the regions are found at, the mask
#: prompt's side, SAM's input side.
DOWN_RATIO = 2
MASK_PROMPT_SIDE = 256
SAM_INPUT_SIDE = 1024


def longest_side_shape(height: int, width: int, side: int) -> Tuple[int, int]:
    """segment_anything's ``ResizeLongestSide.get_preprocess_shape``: the longer side
    scaled to ``side``, each side rounded half up."""
    scale = side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass
class Region:
    """A connected region of one class at half resolution, and its SAM prompts.

    Attributes:
        cls: its class.
        mask: (dh, dw) bool.
        score: the mean class probability over it.
        point: (x, y) of its first most probable pixel (row-major).
        box: (x1, y1, x2, y2), inclusive pixel bounds.
        sam_iou: SAM's predicted IoU of its mask (set once SAM has run).
    """

    cls: int
    mask: np.ndarray
    score: float
    point: Tuple[int, int]
    box: Tuple[int, int, int, int]
    sam_iou: float = float('nan')


@dataclass
class RefinementTrace:
    """What one refinement did (for inspection and the parity tests).

    Attributes:
        down_shape: (dh, dw).
        n_unknown: half-resolution pixels below ``coarse_thresh`` ("unknown").
        regions: every region prompted, in processing order (class, then raster order).
        sam_points, sam_boxes: (R, 2), (R, 4) the prompts in SAM's 1024 frame.
        mask_input_nonzero: per SAM call (one per class), the mask prompt's nonzero count.
        low_res: (R, 256, 256) SAM's low-resolution mask logits of each region.
        merged: whether any region passed (the labels were refined).
        failed_merge: whether failed regions' probabilities were merged.
    """

    down_shape: Tuple[int, int]
    n_unknown: int
    regions: List[Region] = field(default_factory=list)
    sam_points: List[torch.Tensor] = field(default_factory=list)
    sam_boxes: List[torch.Tensor] = field(default_factory=list)
    mask_input_nonzero: List[int] = field(default_factory=list)
    low_res: List[torch.Tensor] = field(default_factory=list)
    merged: bool = False
    failed_merge: bool = False


def legacy_nearest(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, *size) by PyTorch's legacy nearest (source index
    floor(dst * float32(in / out)), as ``F.interpolate(mode='nearest')``)."""
    return F.interpolate(x[None], size=size, mode='nearest')[0]


class SAMRefinement:
    """Trident's refinement of a coarse label map with SAM (see the module doc).

    Args:
        coarse_thresh: half-resolution pixels whose top probability is below it are
            "unknown"; a class whose maximum is below it is not prompted; the mask prompt
            keeps probabilities above it.
        minimal_area: the fewest half-resolution pixels of a prompted region.
        sam_mask_coff: the mask prompt's scale.
        sam_iou_thresh: SAM masks whose predicted IoU is at most this fail.
    """

    def __init__(self, coarse_thresh: float = 0.2, minimal_area: int = 225,
                 sam_mask_coff: float = 0.005, sam_iou_thresh: float = 0.8):
        self.coarse_thresh = coarse_thresh
        self.minimal_area = minimal_area
        self.sam_mask_coff = sam_mask_coff
        self.sam_iou_thresh = sam_iou_thresh

    def regions(self, labels: torch.Tensor, probs: torch.Tensor) -> List[Region]:
        """(dh, dw) labels (``K`` = unknown) and (K, dh, dw) probabilities -> the regions,
        class by class, each class's components in raster order of their first pixel."""
        found = []
        labels_np = labels.cpu().numpy()
        structure = np.ones((3, 3), dtype=bool)  # 8-connectivity
        for cls in range(probs.shape[0]):
            prob = probs[cls]
            if prob.max() < self.coarse_thresh:
                continue
            components, count = ndimage.label(labels_np == cls, structure=structure)
            for number in range(1, count + 1):
                mask = components == number
                if mask.sum() < self.minimal_area:
                    continue
                inside = torch.from_numpy(mask).to(prob.device)
                top = int((prob * inside).flatten().argmax())
                rows, cols = np.nonzero(mask)
                found.append(Region(cls, mask, float(prob[inside].mean()),
                                    (top % prob.shape[1], top // prob.shape[1]),
                                    (int(cols.min()), int(rows.min()), int(cols.max()),
                                     int(rows.max()))))
        return found

    def mask_prompt(self, prob: torch.Tensor, original_size: Tuple[int, int]) -> torch.Tensor:
        """A class's (dh, dw) half-resolution probabilities -> its (1, 256, 256) mask prompt:
        resized to the original image's 256 frame, zero-padded, kept (x ``sam_mask_coff``)
        above ``coarse_thresh``."""
        height, width = longest_side_shape(*original_size, MASK_PROMPT_SIDE)
        mask = F.interpolate(prob[None, None], size=(height, width), mode='bilinear',
                             align_corners=False)[0]
        mask = F.pad(mask, (0, MASK_PROMPT_SIDE - width, 0, MASK_PROMPT_SIDE - height))
        return torch.where(mask > self.coarse_thresh, self.sam_mask_coff * mask, 0)

    def refine(self, sam: Any, view: Any, original_size: Tuple[int, int], probs: torch.Tensor,
               labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, RefinementTrace]:
        """Refine one image's (K, H0, W0) class probabilities and (1, H0, W0) labels with
        ``sam`` (:class:`sfp.vfm.SAM`) on its encoding ``view`` (a
        :class:`sfp.methods.trident.SAMView` of the whole image).  Returns the labels, the
        refined map R that replaces the probabilities, and the trace."""
        num_classes = probs.shape[0]
        height, width = probs.shape[-2:]
        down = height // DOWN_RATIO, width // DOWN_RATIO
        labels_down = legacy_nearest(labels.to(probs.dtype), down)[0].long()
        probs_down = F.interpolate(probs[None], size=down, mode='bilinear',
                                   align_corners=False)[0]
        unknown = probs_down.max(dim=0)[0] < self.coarse_thresh
        labels_down[unknown] = num_classes
        trace = RefinementTrace(down, int(unknown.sum()))
        regions = self.regions(labels_down, probs_down)
        frame = longest_side_shape(*down, SAM_INPUT_SIDE)
        scale = probs.new_tensor([frame[1] / down[1], frame[0] / down[0]])
        kept: Dict[int, torch.Tensor] = {}
        failed: List[np.ndarray] = []
        for cls in sorted({r.cls for r in regions}):
            members = [r for r in regions if r.cls == cls]
            points = probs.new_tensor([r.point for r in members])[:, None] * scale
            boxes = (probs.new_tensor([r.box for r in members]).view(-1, 2, 2) * scale).view(-1, 4)
            mask = self.mask_prompt(probs_down[cls], original_size)
            low_res, iou = sam(view.embedding, (points, torch.ones_like(points[..., 0])),
                               boxes, mask)
            valid = iou[:, 0] > self.sam_iou_thresh
            for region, score in zip(members, iou[:, 0].tolist()):
                region.sam_iou = score
            failed += [r.mask for r, ok in zip(members, valid.tolist()) if not ok]
            if valid.any():
                kept[cls] = low_res[valid]
            trace.regions += members
            trace.sam_points.append(points[:, 0])
            trace.sam_boxes.append(boxes)
            trace.mask_input_nonzero.append(int((mask != 0).sum()))
            trace.low_res.append(low_res[:, 0])
        if not kept:
            return labels, probs, trace
        trace.merged = True
        refined = probs.new_zeros(probs.shape)
        logits = self.upsample(torch.cat(list(kept.values())), view, original_size)
        start = 0
        for cls, low_res in kept.items():
            own = logits[start:start + len(low_res), 0]
            start += len(low_res)
            refined[cls] = (own.sigmoid() * probs[cls]).max(dim=0)[0] * (own > 0).any(dim=0)
        labels = torch.where(refined.sum(dim=0, keepdim=True) == 0, labels,
                             refined.argmax(dim=0, keepdim=True))
        if failed:
            trace.failed_merge = True
            masks = torch.from_numpy(np.stack(failed)).to(probs)
            covered = legacy_nearest(masks, (height, width)).sum(dim=0) != 0
            fallback = covered * probs
            # The release then relabels where max(fallback) > max(refined), which never
            # holds once refined took the larger of the two: no label changes here.
            refined = torch.where(fallback > refined, fallback, refined)
        return labels, refined, trace

    @staticmethod
    def upsample(low_res: torch.Tensor, view: Any, original_size: Tuple[int, int]) -> torch.Tensor:
        """SAM's ``postprocess_masks`` (to 1024, crop to the input size, to the rounded image
        size), then to the original size when that differs: (m, 1, H0, W0) logits."""
        x = F.interpolate(low_res, size=(SAM_INPUT_SIDE, SAM_INPUT_SIDE), mode='bilinear',
                          align_corners=False)
        x = x[..., :view.input_size[0], :view.input_size[1]]
        x = F.interpolate(x, size=view.rounded_size, mode='bilinear', align_corners=False)
        if tuple(view.rounded_size) != tuple(original_size):
            x = F.interpolate(x, size=original_size, mode='bilinear', align_corners=False)
        return x

    def bind(self, sam: Any, view: Any, original_size: Tuple[int, int]
             ) -> Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
        """The refinement of one image as ``(probs, labels) -> (probs, labels)``."""
        def refine(probs: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor,
                                                                       torch.Tensor]:
            labels, refined, _ = self.refine(sam, view, original_size, probs, labels)
            return refined, labels

        return refine
