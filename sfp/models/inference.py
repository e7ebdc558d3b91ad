"""Sliding-window geometry and per-crop logits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .logit_map import LogitMap, window_average_matrix

Window = Tuple[int, int, int, int]  # y1, y2, x1, x2
Span = Tuple[int, int]  # start, end


def window_spans(length: int, crop: int, stride: int) -> List[Span]:
    """Windows along one axis: one every ``stride`` pixels, the last shifted back to end at
    the border; an axis shorter than the crop gives one window of its own length."""
    if crop <= 0 or stride <= 0:
        raise ValueError(f'crop and stride must be positive, got {crop} and {stride}')
    count = max(length - crop + stride - 1, 0) // stride + 1
    spans = []
    for i in range(count):
        end = min(i * stride + crop, length)
        spans.append((max(end - crop, 0), end))
    return spans


def sliding_windows(height: int, width: int, crop: int, stride: int) -> List[Window]:
    """Windows (y1, y2, x1, x2) covering an image, row by row.

    mmseg's scheme without padding: see :func:`window_spans` for each axis.
    """
    return [(y1, y2, x1, x2) for y1, y2 in window_spans(height, crop, stride)
            for x1, x2 in window_spans(width, crop, stride)]


@dataclass(frozen=True)
class SlidingWindowLayout:
    """The crops of one image and where their patch-grid logits sit in its grid canvas.

    Windows are the product of ``row_spans`` and ``col_spans``; window (r, c) has
    ``row_patches[r] x col_patches[c]`` patches, placed at block (r, c) of a
    (sum(row_patches), sum(col_patches)) canvas.  ``row_pads`` / ``col_pads`` (before,
    after), when given, pad each window to whole patches before it is encoded.
    """

    height: int
    width: int
    row_spans: Tuple[Span, ...]
    col_spans: Tuple[Span, ...]
    row_patches: Tuple[int, ...]
    col_patches: Tuple[int, ...]
    row_pads: Optional[Tuple[Span, ...]] = None
    col_pads: Optional[Tuple[Span, ...]] = None

    @classmethod
    def build(cls, height: int, width: int, crop: int, stride: int, cell: int,
              pad_to: int = 0, fixed_grid: Optional[Tuple[int, int]] = None
              ) -> SlidingWindowLayout:
        """A window's logits sit on a grid of ``cell``-pixel cells (the patch size, or a
        method's own output stride), or on ``fixed_grid`` (rows, cols) whatever the
        window's size (ProxyCLIP with SAM: 64 x 64).  Without ``pad_to`` the patch
        convolution drops a window's remainder pixels; with it a window is zero-padded to
        a multiple of ``pad_to`` pixels (ClearCLIP's release: the patch size; ProxyCLIP's:
        56), the floor half of the padding before it and the rest after."""
        rows, cols = window_spans(height, crop, stride), window_spans(width, crop, stride)

        def pads(spans: List[Span]) -> Tuple[Span, ...]:
            total = [-(e - s) % pad_to if pad_to else 0 for s, e in spans]
            return tuple((p // 2, p - p // 2) for p in total)

        def cells(spans: List[Span], fixed: Optional[int]) -> Tuple[int, ...]:
            return tuple(fixed or (e - s + before + after) // cell
                         for (s, e), (before, after) in zip(spans, pads(spans)))

        fixed_rows, fixed_cols = fixed_grid or (None, None)
        return cls(height, width, tuple(rows), tuple(cols), cells(rows, fixed_rows),
                   cells(cols, fixed_cols), pads(rows) if pad_to else None,
                   pads(cols) if pad_to else None)

    @property
    def canvas_shape(self) -> Tuple[int, int]:
        return sum(self.row_patches), sum(self.col_patches)

    def windows(self) -> Iterator[Tuple[int, int, Window]]:
        """(r, c, (y1, y2, x1, x2)) of every window, row by row."""
        for r, (y1, y2) in enumerate(self.row_spans):
            for c, (x1, x2) in enumerate(self.col_spans):
                yield r, c, (y1, y2, x1, x2)

    def block(self, r: int, c: int) -> Tuple[slice, slice]:
        """Canvas rows and columns of window (r, c)'s patch grid."""
        top, left = sum(self.row_patches[:r]), sum(self.col_patches[:c])
        return (slice(top, top + self.row_patches[r]),
                slice(left, left + self.col_patches[c]))

    def crop(self, image: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """Window (r, c) of a (3, H, W) image, padded with zeros where the layout pads."""
        (y1, y2), (x1, x2) = self.row_spans[r], self.col_spans[c]
        window = image[:, y1:y2, x1:x2]
        if self.row_pads is None:
            return window
        return F.pad(window, (*self.col_pads[c], *self.row_pads[r]))

    def uncrop(self, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
        """A (..., h, w) map over window (r, c) as :meth:`crop` gives it, without the
        padding: (..., y2 - y1, x2 - x1)."""
        if self.row_pads is None:
            return x
        (y1, y2), (x1, x2) = self.row_spans[r], self.col_spans[c]
        top, left = self.row_pads[r][0], self.col_pads[c][0]
        return x[..., top:top + y2 - y1, left:left + x2 - x1]

    @property
    def max_coverage(self) -> int:
        """The most windows covering one pixel."""
        def most(spans: Tuple[Span, ...]) -> int:
            return max(sum(s <= start < e for s, e in spans) for start, _ in spans)

        return most(self.row_spans) * most(self.col_spans)

    def logit_map(self, canvas: torch.Tensor) -> LogitMap:
        """The image's logits from its (Q, *canvas_shape) canvas: every crop upsampled
        bilinearly to its window, overlapping windows averaged."""
        return LogitMap(canvas,
                        window_average_matrix(self.height, self.row_spans, self.row_patches,
                                              self.row_pads),
                        window_average_matrix(self.width, self.col_spans, self.col_patches,
                                              self.col_pads))


def patch_logits(features: torch.Tensor, queries: torch.Tensor,
                 grid: Tuple[int, int]) -> torch.Tensor:
    """Cosine logits of patch features against queries on the patch grid.

    Args:
        features: (B, N, D) patch features.
        queries: (Q, D) L2-normalised query features.
        grid: patch grid (rows, cols) with rows * cols == N.
    Returns:
        (B, Q, rows, cols).
    """
    logits = F.normalize(features, dim=-1) @ queries.t()  # (B, N, Q)
    return logits.transpose(1, 2).reshape(features.shape[0], -1, *grid)
