"""Data pipeline transforms."""
from __future__ import annotations

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmseg.registry import TRANSFORMS

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
