"""Class-agnostic regions of one image: what a mask source gives and a method reads."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def nearest_indices(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """Source index of every output position of PyTorch's ``mode='nearest'`` along one
    axis: ``min(floor(float32(dst) * float32(in / out)), in - 1)`` (identity when the sizes
    are equal), read off the framework op itself so that it cannot drift from it."""
    positions = torch.arange(size_in, dtype=torch.float32, device=device).view(1, 1, size_in)
    return F.interpolate(positions, size=size_out, mode='nearest').view(size_out).long()


class RegionMasks:
    """The regions of one image (or of a window of it), as one of two equivalent forms.

    - ``labels`` (H, W) int64: a region map; 0 = not segmented, any other value names a
      region (CorrCLIP's files; ids need not be consecutive, their order is kept).
    - ``layers`` (K, H, W) bool: region k (1-based) is ``layers[k - 1]``; layers may
      overlap (LaVG's files: after its CRF, hole filling and resizing a pixel can sit in
      two masks).  Pixels in no layer are not segmented.

    :meth:`label_map` and :meth:`masks` give either form from either (a label map of
    overlapping layers gives each pixel its first layer).  Resizing and cropping act on
    the stored form, so a method that reads layers sees overlaps as the file had them.
    """

    def __init__(self, labels: Optional[torch.Tensor] = None,
                 layers: Optional[torch.Tensor] = None):
        if (labels is None) == (layers is None):
            raise ValueError('RegionMasks takes either labels (H, W) or layers (K, H, W)')
        if labels is not None and labels.dim() != 2:
            raise ValueError(f'labels must be (H, W), got {tuple(labels.shape)}')
        if layers is not None and layers.dim() != 3:
            raise ValueError(f'layers must be (K, H, W), got {tuple(layers.shape)}')
        self.labels = None if labels is None else labels.long()
        self.layers = None if layers is None else layers.bool()

    @classmethod
    def from_label_map(cls, labels: torch.Tensor) -> RegionMasks:
        return cls(labels=labels)

    @classmethod
    def from_layers(cls, layers: torch.Tensor) -> RegionMasks:
        return cls(layers=layers)

    @property
    def stored(self) -> torch.Tensor:
        return self.labels if self.labels is not None else self.layers

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W)."""
        return tuple(self.stored.shape[-2:])

    @property
    def device(self) -> torch.device:
        return self.stored.device

    def label_map(self) -> torch.Tensor:
        """(H, W) int64 region map, 0 = not segmented (layers: 1 + the first layer holding
        the pixel)."""
        if self.labels is not None:
            return self.labels
        if not len(self.layers):
            return torch.zeros(self.size, dtype=torch.long, device=self.device)
        first = self.layers.int().argmax(0)  # the first True layer (0 where none)
        return torch.where(self.layers.any(0), first + 1, 0)

    def masks(self) -> torch.Tensor:
        """(K, H, W) bool, one layer per region (label maps: one per distinct non-zero
        value, in ascending order)."""
        if self.layers is not None:
            return self.layers
        ids = self.labels.unique()
        return self.labels[None] == ids[ids != 0].view(-1, 1, 1)

    def unsegmented(self) -> torch.Tensor:
        """(H, W) bool: pixels in no region."""
        if self.labels is not None:
            return self.labels == 0
        return ~self.layers.any(0)

    def _map(self, fn) -> RegionMasks:
        return RegionMasks(labels=fn(self.labels)) if self.labels is not None \
            else RegionMasks(layers=fn(self.layers))

    def resized(self, size: Tuple[int, int]) -> RegionMasks:
        """The regions at ``size`` (H', W'), by PyTorch's nearest rule per axis (what both
        releases do: ``F.interpolate(masks.float(), size, mode='nearest')``)."""
        size = (int(size[0]), int(size[1]))
        if size == self.size:
            return self
        rows = nearest_indices(self.size[0], size[0], self.device)
        cols = nearest_indices(self.size[1], size[1], self.device)
        return self._map(lambda x: x[..., rows, :][..., cols])

    def cropped(self, y1: int, y2: int, x1: int, x2: int) -> RegionMasks:
        """Rows y1:y2 and columns x1:x2."""
        return self._map(lambda x: x[..., y1:y2, x1:x2])

    def to(self, device: torch.device) -> RegionMasks:
        return self._map(lambda x: x.to(device))

    def check_size(self, size: Tuple[int, int], source: str) -> None:
        """A one-line error when the regions are not (H, W) = ``size``."""
        size = (int(size[0]), int(size[1]))
        if self.size != size:
            raise ValueError(f'{source}: its region map is {self.size[0]} x {self.size[1]} '
                             f'(H x W) but the image is {size[0]} x {size[1]}')


class ImageRegions:
    """One image's regions as a method reads them.

    Attributes:
        original: at the image's original size (``ori_shape``), for image-level
            post-processing (CorrCLIP's correction of the final map by a vote in each region).
        input: resized with the image to the size the pipeline gives the segmentor (what
            the crops are cut from).
    """

    def __init__(self, original: RegionMasks, input_size: Tuple[int, int]):
        self.original = original
        self.input = original.resized(input_size)

    def window(self, y1: int, y2: int, x1: int, x2: int) -> RegionMasks:
        """The regions of a window (y1, y2, x1, x2) of the input."""
        return self.input.cropped(y1, y2, x1, x2)
