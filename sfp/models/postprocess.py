"""From query logits to class probabilities and a label map.

:func:`postprocess_logits` works on dense logits at the output size;
:func:`postprocess_logit_map` gives the same result from a factored
:class:`~sfp.models.logit_map.LogitMap`, producing full-resolution rows a band at a time
so that a large image never holds more than a band of them at once;
:func:`postprocess_class_map` does the same for a map of class probabilities.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from .logit_map import LogitMap


def class_probabilities(logits: torch.Tensor, query_idx: torch.Tensor, num_classes: int,
                        logit_scale: float) -> torch.Tensor:
    """softmax(logit_scale * logits) over queries, then the max over each class's synonyms.

    (Q, H, W) -> (C, H, W).
    """
    probs = (logits * logit_scale).softmax(dim=0)
    if num_classes == probs.shape[0]:
        return probs
    out = probs.new_zeros((num_classes, *probs.shape[1:]))
    index = query_idx.view(-1, 1, 1).expand_as(probs)
    return out.scatter_reduce_(0, index, probs, 'amax', include_self=False)


def small_class_mask(counts: torch.Tensor, area_thd: float) -> torch.Tensor:
    """(C,) pixel counts per class (by argmax) -> (C,) True for classes to keep.

    Class 0 is always kept; another class is dropped when its count is at most
    ``area_thd`` times the count of all pixels of classes other than 0.
    """
    keep = torch.ones_like(counts, dtype=torch.bool)
    keep[1:] = counts[1:] > area_thd * counts[1:].sum()
    return keep


def suppress_small_classes(probs: torch.Tensor, area_thd: float) -> torch.Tensor:
    """Zero the probabilities of small classes (in place); see :func:`small_class_mask`."""
    counts = torch.bincount(probs.argmax(dim=0).flatten(), minlength=probs.shape[0])
    probs *= small_class_mask(counts, area_thd).to(probs.dtype).view(-1, 1, 1)
    return probs


def label_map(probs: torch.Tensor, prob_thd: float) -> torch.Tensor:
    """argmax over classes; pixels whose top probability is below ``prob_thd`` get 0.

    (C, H, W) -> (1, H, W) int64.
    """
    top, labels = probs.max(dim=0, keepdim=True)
    return labels.masked_fill_(top < prob_thd, 0)


def postprocess_logits(logits: torch.Tensor, query_idx: torch.Tensor, num_classes: int,
                       logit_scale: float, prob_thd: float = 0.0,
                       area_thd: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The release's post-processing of one image's (Q, H, W) query logits.

    Returns the class probabilities (C, H, W) (after the area threshold) and the label
    map (1, H, W).
    """
    probs = class_probabilities(logits, query_idx, num_classes, logit_scale)
    if area_thd is not None:
        suppress_small_classes(probs, area_thd)
    return probs, label_map(probs, prob_thd)


def postprocess_logit_map(logits: LogitMap, query_idx: torch.Tensor, num_classes: int,
                          logit_scale: float, prob_thd: float = 0.0,
                          area_thd: Optional[float] = None, return_probs: bool = True,
                          max_elements: int = 1 << 24
                          ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """:func:`postprocess_logits` of a factored logit map, a band of rows at a time, so that
    no more than about ``max_elements`` full-resolution logits exist at once.

    Returns probabilities (C, H, W) (None unless ``return_probs``) and labels (1, H, W).
    The area threshold needs whole-image counts, so it costs a second pass.
    """
    def to_probs(band: torch.Tensor) -> torch.Tensor:
        return class_probabilities(band, query_idx, num_classes, logit_scale)

    return _postprocess_bands(logits, to_probs, num_classes, prob_thd, area_thd, return_probs,
                              max_elements)


def postprocess_class_map(probs: LogitMap, prob_thd: float = 0.0,
                          area_thd: Optional[float] = None, return_probs: bool = True,
                          max_elements: int = 1 << 24
                          ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """:func:`postprocess_logit_map` of a map that holds class probabilities already (a
    method's label votes, see :class:`~sfp.models.label_votes.LabelVotes`): no softmax,
    no synonym max; the same thresholds and argmax."""
    return _postprocess_bands(probs, lambda band: band, probs.grid.shape[0], prob_thd,
                              area_thd, return_probs, max_elements)


def _postprocess_bands(logits: LogitMap, to_probs: Callable[[torch.Tensor], torch.Tensor],
                       num_classes: int, prob_thd: float, area_thd: Optional[float],
                       return_probs: bool, max_elements: int
                       ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    height, width = logits.size
    device = logits.grid.device
    keep = None
    if area_thd is not None:
        counts = torch.zeros(num_classes, dtype=torch.long, device=device)
        for _, band in logits.row_bands(max_elements):
            counts += torch.bincount(to_probs(band).argmax(0).flatten(), minlength=num_classes)
        keep = small_class_mask(counts, area_thd).to(logits.grid.dtype).view(-1, 1, 1)
    labels = torch.empty((1, height, width), dtype=torch.long, device=device)
    all_probs = (logits.grid.new_empty((num_classes, height, width)) if return_probs else None)
    for rows, band in logits.row_bands(max_elements):
        probs = to_probs(band)
        if keep is not None:
            probs *= keep
        labels[:, rows] = label_map(probs, prob_thd)
        if all_probs is not None:
            all_probs[:, rows] = probs
    return all_probs, labels
