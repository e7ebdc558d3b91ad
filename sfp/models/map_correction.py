"""Map correction: every class-agnostic region of an image takes the label most of its
pixels have (CorrCLIP's last step, Zhang et al., ICCV 2025), as a post-process of the
final label map that any method can switch on (``SFPSegmentor(map_correction=True)``)."""
from __future__ import annotations

import torch

from .regions import vote_in_regions


def correct_map(labels: torch.Tensor, regions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Majority vote of the labels inside each region.

    Args:
        labels: (H, W) int64 labels in [0, num_classes).
        regions: (H, W) integer region ids at the same size; the smallest id is the
            unsegmented union (0 in CorrCLIP's and LaVG's files, -1 in EoMT's): its pixels
            keep their labels, as the release does (so does the smallest real region of
            an image whose pixels are all segmented).
        num_classes: number of classes.
    Returns:
        (H, W) int64 labels; a tie goes to the smallest label (``torch.mode``'s choice on
        the CPU, which the release calls).
    """
    if labels.shape != regions.shape:
        raise ValueError(f'map correction: the region map is {tuple(regions.shape)} but the '
                         f'label map is {tuple(labels.shape)} (H x W)')
    _, index = torch.unique(regions, return_inverse=True)
    voted = vote_in_regions(labels, index, num_classes)
    return torch.where(index == 0, labels, voted)
