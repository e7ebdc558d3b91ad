"""Full-resolution query logits kept in factored form.

Resizing patch-grid logits bilinearly, averaging overlapping sliding windows and resizing
again to the original image are all linear and act on rows and columns separately.  So an
image's (Q, H, W) logits are ``rows @ grid[q] @ cols.T`` for every query q, where ``grid``
holds the crops' patch-grid logits side by side and ``rows`` / ``cols`` are small fixed
mixing matrices.  Keeping that form avoids resizing every crop to 224 x 224, summing them
into an input-size canvas and resizing that canvas again, and lets post-processing
produce full-resolution rows a band at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Tuple

import torch


def bilinear_taps(out_size: int, in_size: int
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``F.interpolate``'s bilinear taps along one axis (align_corners False, no
    antialiasing): output i is ``(1 - frac[i]) * x[low[i]] + frac[i] * x[high[i]]``.

    Returns (low, high, frac): (out_size,) int64, int64 and float64.
    """
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size)
           - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)  # low == high at the far border
    return low, high, src - low


def bilinear_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 matrix M of :func:`bilinear_taps`: ``M @ x`` resizes
    x's first axis."""
    return resize_rows(torch.eye(in_size, dtype=torch.float64), out_size)


def resize_rows(matrix: torch.Tensor, out_size: int) -> torch.Tensor:
    """``bilinear_matrix(out_size, len(matrix)) @ matrix``, two rows blended per output."""
    low, high, frac = bilinear_taps(out_size, matrix.shape[0])
    frac = frac.to(matrix).unsqueeze(1)
    return matrix[low] * (1 - frac) + matrix[high] * frac


def window_average_matrix(length: int, spans: Sequence[Tuple[int, int]],
                          grid_sizes: Sequence[int]) -> torch.Tensor:
    """Along one axis of length ``length``: each window ``spans[k] = (start, end)`` has
    ``grid_sizes[k]`` patch rows (or columns), upsampled bilinearly to ``end - start``
    pixels; every pixel takes the mean over the windows that cover it.

    Returns the (length, sum(grid_sizes)) float64 matrix of that operation.
    """
    matrix = torch.zeros(length, sum(grid_sizes), dtype=torch.float64)
    coverage = torch.zeros(length, 1, dtype=torch.float64)
    offset = 0
    for (start, end), size in zip(spans, grid_sizes):
        matrix[start:end, offset:offset + size] = bilinear_matrix(end - start, size)
        coverage[start:end] += 1
        offset += size
    if bool((coverage == 0).any()):
        raise ValueError(f'windows {list(spans)} leave part of an axis of length {length} '
                         f'uncovered')
    return matrix / coverage


def nonzero_span(matrix: torch.Tensor) -> Tuple[int, int]:
    """First and one-past-last column holding a nonzero entry of a 2-D matrix."""
    used = matrix.any(dim=0).nonzero()
    return (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 0)


def banded_matmul(matrix: torch.Tensor, x: torch.Tensor, chunk: int = 64,
                  dense_up_to: int = 256) -> torch.Tensor:
    """``matrix @ x`` for a (n, k) mixing matrix with few nonzeros per row, clustered.

    Bilinear resizing and window averaging read only nearby grid cells, so for a wide
    matrix (more than ``dense_up_to`` columns: many windows) each chunk of ``chunk``
    output rows multiplies just the span of ``x``'s rows it has weights for; a narrow one
    is applied in one product.  ``matrix`` is float64 on the CPU (spans are found there,
    without a device sync); ``x`` is (..., k, m) in any dtype and device.  Returns
    (..., n, m) like ``x``.
    """
    weights = matrix.to(x)
    if matrix.shape[1] <= dense_up_to:
        return weights @ x
    out = x.new_empty((*x.shape[:-2], matrix.shape[0], x.shape[-1]))
    for start in range(0, matrix.shape[0], chunk):
        stop = min(start + chunk, matrix.shape[0])
        lo, hi = nonzero_span(matrix[start:stop])
        out[..., start:stop, :] = weights[start:stop, lo:hi] @ x[..., lo:hi, :]
    return out


@dataclass
class LogitMap:
    """Query logits of one image, (Q, H, W) = ``rows @ grid @ cols.T`` per query.

    Attributes:
        grid: (Q, R, C) patch-grid logits (the crops' grids side by side).
        rows: (H, R) mixing matrix of the rows, float64 on the CPU.
        cols: (W, C) mixing matrix of the columns, float64 on the CPU.
    """

    grid: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    @classmethod
    def from_grid(cls, grid: torch.Tensor) -> LogitMap:
        """The (Q, h, w) logits themselves, at their own size."""
        rows, cols = (torch.eye(n, dtype=torch.float64) for n in grid.shape[-2:])
        return cls(grid, rows, cols)

    @property
    def size(self) -> Tuple[int, int]:
        return self.rows.shape[0], self.cols.shape[0]

    def resized(self, size: Tuple[int, int]) -> LogitMap:
        """The map bilinearly resized to ``size`` (align_corners False), still factored."""
        if tuple(size) == self.size:
            return self
        return LogitMap(self.grid, resize_rows(self.rows, size[0]),
                        resize_rows(self.cols, size[1]))

    def _mixed_cols(self) -> torch.Tensor:
        """(Q, R, W): the columns already mixed."""
        return banded_matmul(self.cols, self.grid.transpose(1, 2)).transpose(1, 2)

    def dense(self) -> torch.Tensor:
        """The (Q, H, W) logits."""
        return banded_matmul(self.rows, self._mixed_cols())

    def row_bands(self, max_elements: int) -> Iterator[Tuple[slice, torch.Tensor]]:
        """(row slice, (Q, rows, W) logits) bands covering the map top to bottom, each of at
        most about ``max_elements`` values."""
        height, width = self.size
        rows = max(1, max_elements // max(self.grid.shape[0] * width, 1))
        mixed_cols = self._mixed_cols()
        for start in range(0, height, rows):
            band = slice(start, min(start + rows, height))
            yield band, banded_matmul(self.rows[band], mixed_cols)
