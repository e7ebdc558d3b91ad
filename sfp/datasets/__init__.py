"""Datasets, transforms and data checks (registered in mmseg's registries)."""
from .benchmarks import (
                         COCO_OBJECT_CLASSES,
                         COCOObjectDataset,
                         CustomSegDataset,
                         PascalContext59Dataset,
                         PascalContext60Dataset,
                         PascalVOC20Dataset,
)
from .checks import DataLayoutError, check_dataset_config, check_dataset_files
from .image_io import ImageReadError, decode_image, read_image
from .meta import dataset_meta
from .transforms import LoadImageChecked, ResizeCenterCrop

__all__ = [
    'COCOObjectDataset', 'COCO_OBJECT_CLASSES', 'CustomSegDataset', 'DataLayoutError',
    'ImageReadError', 'LoadImageChecked', 'PascalContext59Dataset', 'PascalContext60Dataset',
    'PascalVOC20Dataset', 'ResizeCenterCrop', 'check_dataset_config', 'check_dataset_files',
    'dataset_meta', 'decode_image', 'read_image'
]
