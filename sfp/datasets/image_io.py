"""Reading images of any common kind into 8-bit BGR, with clear errors."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or not an image."""


def decode_image(data: bytes, source: Union[str, Path] = '<bytes>') -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 BGR, as mmcv's loader would give.

    OpenCV decodes first (exactly mmcv's ``LoadImageFromFile``: EXIF orientation applied,
    grayscale replicated, alpha dropped, 16-bit scaled to 8-bit); formats OpenCV cannot
    read (GIF, some TIFFs ...) go through Pillow with the same conventions.
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is not None:
        return img
    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil = ImageOps.exif_transpose(pil)
            if pil.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                array = np.asarray(pil, dtype=np.float64)
                pil = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            rgb = np.asarray(pil.convert('RGB'))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(f'cannot decode image {source}: not an image file, or damaged '
                             f'({type(err).__name__})') from err
    return np.ascontiguousarray(rgb[:, :, ::-1])


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR (see :func:`decode_image`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ImageReadError(f'image not found: {path}') from err
    except OSError as err:
        raise ImageReadError(f'cannot read image {path}: {err.strerror or err}') from err
    return decode_image(data, path)
