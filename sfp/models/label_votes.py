"""Label votes of a method that decides each crop's labels itself (CLIPtrase's vote
within regions): per pixel of an image, how many of the windows covering it gave it each
class.  The fractions are the image's class probabilities."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from .logit_map import LogitMap


@dataclass
class LabelVotes:
    """Votes of the windows of one image.

    Attributes:
        counts: (C, H, W) windows giving each pixel each class: uint8 when no pixel can
            get more than 255 votes (a (C, H, W) canvas per image of a batch is the
            largest thing prediction holds), else int32.
        coverage: (H, W) windows covering each pixel.
    """

    counts: torch.Tensor
    coverage: torch.Tensor

    @classmethod
    def empty(cls, num_classes: int, size: Tuple[int, int], max_votes: int,
              device: torch.device) -> LabelVotes:
        """No votes yet on an image of ``size``; no pixel will get more than ``max_votes``."""
        dtype = torch.uint8 if max_votes <= torch.iinfo(torch.uint8).max else torch.int32
        return cls(torch.zeros((num_classes, *size), dtype=dtype, device=device),
                   torch.zeros(size, dtype=dtype, device=device))

    def add(self, labels: torch.Tensor, rows: slice, cols: slice) -> None:
        """Count a window's (h, w) int64 labels at ``rows`` and ``cols`` of the image."""
        region = self.counts[:, rows, cols]
        region.scatter_add_(0, labels[None], torch.ones_like(labels, dtype=region.dtype)[None])
        self.coverage[rows, cols] += 1

    def cropped(self, height: int, width: int) -> LabelVotes:
        """The votes of the top-left ``height`` x ``width`` part of the image."""
        return LabelVotes(self.counts[:, :height, :width], self.coverage[:height, :width])

    def fractions(self, dtype: torch.dtype) -> LogitMap:
        """(C, H, W) fraction of the covering windows that gave each pixel each class."""
        return LogitMap.from_grid(self.counts.to(dtype) / self.coverage.to(dtype))
