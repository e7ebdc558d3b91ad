"""From query logits to class probabilities and a label map."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


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


def suppress_small_classes(probs: torch.Tensor, area_thd: float) -> torch.Tensor:
    """Zero the probabilities of small classes (in place).

    Counting pixels by the argmax, a class other than 0 whose count is at most
    ``area_thd`` times the count of all pixels of classes other than 0 is suppressed.
    """
    counts = torch.bincount(probs.argmax(dim=0).flatten(), minlength=probs.shape[0])[1:]
    keep = counts > area_thd * counts.sum()
    probs[1:] *= keep.to(probs.dtype).view(-1, 1, 1)
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
