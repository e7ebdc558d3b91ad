"""Data pipeline transforms."""
from __future__ import annotations

from typing import Optional, Tuple

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmseg.registry import TRANSFORMS
from PIL import Image

from .image_io import ImageReadError, decode_image


@TRANSFORMS.register_module()
class LoadImageChecked(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same pixels) that names the file it cannot read.

    Also accepts what OpenCV cannot decode but Pillow can, and always gives 3 channels.
    """

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise ImageReadError(f'image not found: {path} (listed by the dataset)') from err
        img = decode_image(data, path)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


def short_side_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """(height, width) after resizing the short side to ``size`` the way torchvision's
    ``Resize(size)`` does: the long side becomes ``int(size * long / short)``."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _pil_resize(array: np.ndarray, size: Tuple[int, int], resample: int) -> np.ndarray:
    """An (H, W) or (H, W, 3) array resized by Pillow to ``size`` (height, width)."""
    return np.asarray(Image.fromarray(array).resize(size[::-1], resample))


@TRANSFORMS.register_module()
class ResizeCenterCrop(BaseTransform):
    """CLIPtrase's own protocol (leaves162/CLIPtrase ``clip_self_correlation.py``): resize
    the short side to ``size``, then keep the central ``size`` x ``size`` square; the
    label maps get the same resize (nearest) and crop, so predictions and the metric
    cover only the square.

    As the release's torchvision ``Resize`` and ``CenterCrop`` on Pillow images: bicubic
    Pillow resampling, the long side ``int(size * long / short)``, an image whose short
    side is already ``size`` left untouched; the crop starts at
    ``round((side - size) / 2)`` (Python rounding: halves to even).  ``ori_shape`` and
    ``img_shape`` become the square's.

    Args:
        size: side of the square (the release's ``image_size``: 224 or 336).
        ignore_to: label that ``ignore_index`` pixels get (None keeps them ignored).  The
            release's datasets with a background class count VOC's boundary pixels (255)
            as background; a crop with only ignored pixels stays ignored (the release
            skips such an image).
        ignore_index: the ignored label.
    """

    def __init__(self, size: int, ignore_to: Optional[int] = None, ignore_index: int = 255):
        if size < 1:
            raise ValueError(f'ResizeCenterCrop size must be a positive int, got {size!r}')
        self.size = size
        self.ignore_to = ignore_to
        self.ignore_index = ignore_index

    def _resize_crop(self, array: np.ndarray, resample: int) -> np.ndarray:
        height, width = array.shape[:2]
        resized = short_side_size(height, width, self.size)
        if min(height, width) != self.size:
            array = _pil_resize(array, resized, resample)
        top = int(round((resized[0] - self.size) / 2))
        left = int(round((resized[1] - self.size) / 2))
        return np.ascontiguousarray(array[top:top + self.size, left:left + self.size])

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8:
            raise ValueError(f'ResizeCenterCrop resizes uint8 images with Pillow, got '
                             f'{img.dtype} ({results.get("img_path", "image")}); load it '
                             f'without to_float32')
        results['img'] = self._resize_crop(img, Image.BICUBIC)
        for key in results.get('seg_fields', []):
            label = self._resize_crop(results[key], Image.NEAREST)
            ignored = label == self.ignore_index
            if self.ignore_to is not None and not ignored.all():
                label[ignored] = self.ignore_to
            results[key] = label
        results['img_shape'] = results['ori_shape'] = (self.size, self.size)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, ignore_to={self.ignore_to}, '
                f'ignore_index={self.ignore_index})')
