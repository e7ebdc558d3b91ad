"""High-level inference: build a segmentor for a vocabulary, segment images."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Union

import mmcv
import numpy as np
import torch
from mmseg.structures import SegDataSample

from .models import SFPSegmentor
from .text import load_vocabulary, parse_class_names, read_class_names

CLASSNAMES_DIR = Path(__file__).resolve().parents[1] / 'configs' / 'classnames'
# Vocabulary presets: the benchmarks' class files in configs/classnames.
PRESETS = {
    'voc21': 'cls_voc21.txt', 'voc20': 'cls_voc20.txt', 'context60': 'cls_context60.txt',
    'context59': 'cls_context59.txt', 'coco_object': 'cls_coco_object.txt',
    'coco_stuff': 'cls_coco_stuff.txt', 'cityscapes': 'cls_city_scapes.txt',
    'ade20k': 'cls_ade20k.txt', 'camvid': 'cls_camvid.txt',
}

Vocabulary = Union[str, Path, Sequence[Sequence[str]]]


def resolve_vocabulary(vocabulary: Vocabulary) -> List[List[str]]:
    """Synonym lists of a vocabulary given as a preset name, a class-name file, a comma
    list of classes (synonyms joined with '|', e.g. ``'sky,person|people,car'``) or
    already as synonym lists."""
    if not isinstance(vocabulary, (str, Path)):
        return load_vocabulary(vocabulary)
    text = str(vocabulary)
    if text in PRESETS:
        path = CLASSNAMES_DIR / PRESETS[text]
        if not path.is_file():
            raise FileNotFoundError(f'preset {text!r} needs {path}, part of the repository '
                                    f'checkout (configs/classnames)')
        return read_class_names(path)
    if Path(text).is_file():
        return read_class_names(text)
    if Path(text).suffix == '.txt' or '/' in text:
        raise FileNotFoundError(f'class-name file not found: {text}')
    lines = [item.replace('|', ',') for item in text.split(',')]
    return parse_class_names(lines, source=f'vocabulary {text!r} (presets: '
                                           f'{", ".join(PRESETS)})')


def init_segmentor(clip_path: str = 'ViT-B/16', vocabulary: Vocabulary = 'voc21',
                   device: Union[str, torch.device, None] = None,
                   precision: Optional[str] = None, **kwargs) -> SFPSegmentor:
    """An :class:`SFPSegmentor` for a vocabulary (see :func:`resolve_vocabulary`)."""
    return SFPSegmentor(clip_path=clip_path, name_path=resolve_vocabulary(vocabulary),
                        device=device, precision=precision, **kwargs)


def prepare_image(image_bgr: np.ndarray, short_side: int = 336,
                  max_long_side: int = 2048) -> torch.Tensor:
    """Resize like the benchmarks' pipeline (mmseg ``Resize(scale=(2048, short_side),
    keep_ratio=True)``) -> (3, h, w) uint8 BGR tensor."""
    resized = mmcv.imrescale(image_bgr, (max_long_side, short_side),
                             interpolation='bilinear', backend='cv2')
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def segment_images(segmentor: SFPSegmentor, images_bgr: Sequence[np.ndarray],
                   short_side: int = 336) -> List[SegDataSample]:
    """Segment (H, W, 3) uint8 BGR images; predictions come at each image's own size."""
    inputs, samples = [], []
    for image in images_bgr:
        prepared = prepare_image(image, short_side)
        inputs.append(prepared)
        samples.append(SegDataSample(metainfo=dict(ori_shape=image.shape[:2],
                                                   img_shape=tuple(prepared.shape[1:]))))
    data = segmentor.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)
    return segmentor.predict(data['inputs'], data['data_samples'])
