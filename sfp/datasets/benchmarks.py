"""The benchmark datasets mmseg does not ship, and a no-code custom dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from mmseg.datasets import BaseSegDataset, PascalContextDataset, PascalVOCDataset
from mmseg.registry import DATASETS

from ..text import read_class_names


@DATASETS.register_module()
class PascalVOC20Dataset(PascalVOCDataset):
    """PASCAL VOC 2012 without the background class: labels 1..20 become 0..19 and
    background becomes the ignore index (``reduce_zero_label``)."""

    METAINFO = dict(classes=PascalVOCDataset.METAINFO['classes'][1:],
                    palette=PascalVOCDataset.METAINFO['palette'][1:])

    def __init__(self, ann_file: str, reduce_zero_label: bool = True, **kwargs):
        super().__init__(ann_file=ann_file, reduce_zero_label=reduce_zero_label, **kwargs)


@DATASETS.register_module()
class PascalContext60Dataset(PascalContextDataset):
    """PASCAL Context with 59 classes and background (0): 60 labels."""

    def __init__(self, ann_file: str, **kwargs):
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(ann_file=ann_file, **kwargs)


@DATASETS.register_module()
class PascalContext59Dataset(PascalContextDataset):
    """PASCAL Context's 59 classes; background becomes the ignore index."""

    METAINFO = dict(classes=PascalContextDataset.METAINFO['classes'][1:],
                    palette=PascalContextDataset.METAINFO['palette'][1:])

    def __init__(self, ann_file: str, **kwargs):
        kwargs.setdefault('reduce_zero_label', True)
        super().__init__(ann_file=ann_file, **kwargs)


COCO_OBJECT_CLASSES = (
    'background', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')


def _palette(n: int) -> list:
    """A fixed, well-spread palette of n colours (first is black)."""
    return [[(i * 67) % 256, (i * 139 + 50) % 256, (i * 211 + 100) % 256] if i else [0, 0, 0]
            for i in range(n)]


@DATASETS.register_module()
class COCOObjectDataset(BaseSegDataset):
    """COCO-Object: background (0) and COCO's 80 thing classes, from masks named
    ``<image id>_instanceTrainIds.png`` (see tools/dataset_converters/coco_object.py)."""

    METAINFO = dict(classes=COCO_OBJECT_CLASSES, palette=_palette(len(COCO_OBJECT_CLASSES)))

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '_instanceTrainIds.png',
                 **kwargs):
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


@DATASETS.register_module()
class CustomSegDataset(BaseSegDataset):
    """Any folder of images with label maps, described in the config alone.

    Classes come from a class-name file (one per line, synonyms after commas; the first
    name is the display name), so the same file serves the model's ``name_path``.

    Args:
        classes_file: class-name file; line i is label i (after ``reduce_zero_label``).
        data_root, data_prefix=dict(img_path=..., seg_map_path=...), img_suffix,
        seg_map_suffix, reduce_zero_label, ignore_index, ann_file: as in mmseg.
    """

    def __init__(self, classes_file: Union[str, Path], metainfo: Optional[dict] = None,
                 img_suffix: str = '.jpg', seg_map_suffix: str = '.png', **kwargs):
        names = [synonyms[0] for synonyms in read_class_names(classes_file)]
        metainfo = dict(metainfo or {})
        metainfo.setdefault('classes', tuple(names))
        metainfo.setdefault('palette', _palette(len(names)))
        super().__init__(metainfo=metainfo, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)
