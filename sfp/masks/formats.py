"""The releases' per-image mask files, read and written.

- ``lavg``: LaVG's ``<name>.pth`` (``name`` = the image's file name up to its first
  '.'), a ``torch.save``d uint8 tensor (M + 1, H, W): M region masks (0 / 255), then
  the background, the pixels in no mask (0 / 1).
- ``corrclip``: CorrCLIP's ``<stem>.npz`` with one integer array ``instance_mask``
  (H, W): 0 = not segmented, other values region ids.

Both at the image's original size.  Writes are atomic: a file is complete or absent.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from ..utils.io import atomic_write_bytes
from .regions import RegionMasks

PathLike = Union[str, Path]


class MaskFileError(ValueError):
    """A mask file that is missing, unreadable or not in its release's format."""


def _lavg_name(image: PathLike) -> str:
    return Path(image).name.split('.')[0]


def _corrclip_name(image: PathLike) -> str:
    return Path(image).stem


#: format -> (suffix, the file name's stem from the image's path), as each release names them.
FORMATS: Dict[str, tuple] = {'lavg': ('.pth', _lavg_name), 'corrclip': ('.npz', _corrclip_name)}


def mask_file_name(image: PathLike, file_format: str) -> str:
    """The mask file's name for an image file in a format ('lavg' or 'corrclip')."""
    if file_format not in FORMATS:
        raise ValueError(f'unknown mask file format {file_format!r}; choose from '
                         f'{", ".join(FORMATS)}')
    suffix, stem = FORMATS[file_format]
    return stem(image) + suffix


def read_lavg(path: PathLike) -> RegionMasks:
    try:
        stack = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same line
        raise MaskFileError(f'{path}: not a LaVG mask file ({type(err).__name__}: {err})') \
            from None
    if not isinstance(stack, torch.Tensor) or stack.dim() != 3 or len(stack) < 1:
        shape = tuple(stack.shape) if isinstance(stack, torch.Tensor) else type(stack).__name__
        raise MaskFileError(f'{path}: a LaVG mask file holds one (M + 1, H, W) tensor, '
                            f'got {shape}')
    layers = stack[:-1] != 0
    if not torch.equal(stack[-1] != 0, ~layers.any(0)):
        raise MaskFileError(f'{path}: its last layer is not the background (the pixels in '
                            f'none of its {len(layers)} masks), as LaVG writes it')
    return RegionMasks.from_layers(layers)


def write_lavg(path: PathLike, regions: RegionMasks) -> None:
    layers = regions.masks().cpu()
    stack = torch.cat([layers.to(torch.uint8) * 255, (~layers.any(0))[None].to(torch.uint8)])
    buffer = io.BytesIO()
    torch.save(stack, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_corrclip(path: PathLike) -> RegionMasks:
    try:
        with np.load(path) as data:
            labels = data['instance_mask'] if 'instance_mask' in data.files else None
            keys = data.files
    except Exception as err:  # noqa: BLE001
        raise MaskFileError(f'{path}: not a CorrCLIP mask file ({type(err).__name__}: '
                            f'{err})') from None
    if labels is None:
        raise MaskFileError(f'{path}: no array instance_mask (it has {", ".join(keys)})')
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise MaskFileError(f'{path}: instance_mask must be an (H, W) integer array, got '
                            f'{labels.dtype} {labels.shape}')
    return RegionMasks.from_label_map(torch.from_numpy(labels.astype(np.int64)))


def write_corrclip(path: PathLike, regions: RegionMasks) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, instance_mask=regions.label_map().cpu().numpy().astype(np.int32))
    atomic_write_bytes(path, buffer.getvalue())


_READERS = {'lavg': read_lavg, 'corrclip': read_corrclip}
_WRITERS = {'lavg': write_lavg, 'corrclip': write_corrclip}


def read_mask_file(path: PathLike, file_format: str) -> RegionMasks:
    return _READERS[file_format](path)


def write_mask_file(path: PathLike, regions: RegionMasks, file_format: str) -> None:
    _WRITERS[file_format](path, regions)
