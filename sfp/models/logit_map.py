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
from functools import cached_property
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch


def _taps(position: np.ndarray, scale: Union[float, np.ndarray],
          in_size: Union[int, np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F.interpolate``'s bilinear taps (align_corners False, no antialiasing): output
    position p is ``(1 - frac) * x[low] + frac * x[high]``, with ``scale = in / out``."""
    src = np.maximum((position + 0.5) * scale - 0.5, 0.0)
    last = np.asarray(in_size) - 1
    low = np.minimum(np.floor(src).astype(np.int64), last)
    high = np.minimum(low + 1, last)  # low == high at the far border
    return low, high, src - low


def resize_rows(matrix: torch.Tensor, out_size: int) -> torch.Tensor:
    """``bilinear_matrix(out_size, len(matrix)) @ matrix`` for a float64 CPU matrix, two
    rows blended per output row."""
    low, high, frac = _taps(np.arange(out_size, dtype=np.float64),
                            matrix.shape[0] / out_size, matrix.shape[0])
    rows, frac = matrix.numpy(), frac[:, None]
    return torch.from_numpy(rows[low] * (1 - frac) + rows[high] * frac)


def bilinear_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 matrix M of ``F.interpolate``'s bilinear weights along
    one axis: ``M @ x`` resizes x's first axis."""
    return resize_rows(torch.eye(in_size, dtype=torch.float64), out_size)


def window_average_matrix(length: int, spans: Sequence[Tuple[int, int]],
                          grid_sizes: Sequence[int],
                          pads: Optional[Sequence[Tuple[int, int]]] = None) -> torch.Tensor:
    """Along one axis of length ``length``: each window ``spans[k] = (start, end)`` (in
    increasing order) has ``grid_sizes[k]`` patch rows (or columns), upsampled bilinearly
    to ``end - start`` pixels; every pixel takes the mean over the windows covering it.
    With ``pads[k] = (before, after)`` window k was padded before encoding: its grid is
    upsampled to ``before + end - start + after`` pixels and the padding cut off.

    Returns the (length, sum(grid_sizes)) float64 matrix of that operation, built for all
    windows at once (a fixed number of NumPy operations however many windows there are:
    this runs for every image, on the host).
    """
    ends = [0] + [end for _, end in spans]
    if spans[-1][1] != length or any(start > end for (start, _), end in zip(spans, ends)):
        raise ValueError(f'windows {list(spans)} do not cover an axis of length {length}')
    starts = np.array([start for start, _ in spans])
    lengths = np.array([end - start for start, end in spans])
    sizes = np.array(grid_sizes)
    offsets = np.cumsum(sizes) - sizes  # first column of each window's block
    before, padded = np.zeros(len(spans), dtype=np.int64), lengths
    if pads is not None:
        before = np.array([b for b, _ in pads])
        padded = lengths + before + np.array([a for _, a in pads])
    window = np.repeat(np.arange(len(spans)), lengths)  # for every (window, pixel) pair...
    position = np.arange(len(window)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    low, high, frac = _taps((position + before[window]).astype(np.float64),
                            (sizes / padded)[window], sizes[window])  # ...its taps
    pixel = starts[window] + position
    matrix = np.zeros((length, int(sizes.sum())))
    np.add.at(matrix, (pixel, offsets[window] + low), 1 - frac)
    np.add.at(matrix, (pixel, offsets[window] + high), frac)
    return torch.from_numpy(matrix / np.bincount(pixel, minlength=length)[:, None])


def nonzero_span(matrix: torch.Tensor) -> Tuple[int, int]:
    """First and one-past-last column holding a nonzero entry of a 2-D matrix."""
    used = matrix.any(dim=0).nonzero()
    return (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 0)


def to_device_of(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A CPU matrix in ``x``'s dtype and on its device.  To a GPU it travels through
    pinned memory without blocking: a plain copy would wait for every queued kernel."""
    weights = matrix.to(x.dtype)
    if x.device.type == 'cuda':
        return weights.pin_memory().to(x.device, non_blocking=True)
    return weights.to(x.device)


def banded_matmul(matrix: torch.Tensor, x: torch.Tensor, chunk: int = 64,
                  dense_up_to: int = 256) -> torch.Tensor:
    """``matrix @ x`` for a (n, k) CPU mixing matrix with few nonzeros per row, clustered.

    Bilinear resizing and window averaging read only nearby grid cells, so on the CPU a
    wide matrix (more than ``dense_up_to`` columns: many windows) is applied a chunk of
    ``chunk`` output rows at a time, each multiplying just the span of ``x``'s rows it
    has weights for.  Elsewhere it is one product (a GPU does the whole of it in far less
    time than finding spans takes).  ``x`` is (..., k, m); returns (..., n, m) like ``x``.
    """
    weights = to_device_of(matrix, x)
    if x.device.type != 'cpu' or matrix.shape[1] <= dense_up_to:
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

    The mixing matrices are small and built on the CPU from the window geometry alone;
    only the grid lives on the model's device.
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

    def cropped(self, height: int, width: int) -> LogitMap:
        """The top-left ``height`` x ``width`` part of the map."""
        return LogitMap(self.grid, self.rows[:height], self.cols[:width])

    @cached_property
    def mixed_cols(self) -> torch.Tensor:
        """(Q, R, W): the columns already mixed, computed once however many passes over
        the rows read them (the area threshold makes two)."""
        return banded_matmul(self.cols, self.grid.transpose(1, 2)).transpose(1, 2)

    def dense(self) -> torch.Tensor:
        """The (Q, H, W) logits."""
        return banded_matmul(self.rows, self.mixed_cols)

    def row_bands(self, max_elements: int) -> Iterator[Tuple[slice, torch.Tensor]]:
        """(row slice, (Q, rows, W) logits) bands covering the map top to bottom, each of at
        most about ``max_elements`` values."""
        height, width = self.size
        rows = max(1, max_elements // max(self.grid.shape[0] * width, 1))
        for start in range(0, height, rows):
            band = slice(start, min(start + rows, height))
            yield band, banded_matmul(self.rows[band], self.mixed_cols)
