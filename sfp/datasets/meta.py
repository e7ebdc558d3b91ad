"""Class names and palette for the classes of a vocabulary (mmseg's ``dataset_meta``)."""
from __future__ import annotations

from typing import Optional, Sequence

from ..visualization import make_palette


def dataset_meta(dataset_type: Optional[str], names: Sequence[str]) -> dict:
    """``classes`` and ``palette`` (RGB) for a vocabulary's classes, named by ``names``
    (each class's first synonym).

    The names and colours of the registered dataset ``dataset_type`` where it declares one
    per class (VOC's class 0 is "background", not its first synonym "sky"); otherwise
    ``names`` and the demo's palette (:func:`sfp.visualization.make_palette`).
    """
    from mmseg.registry import DATASETS

    metainfo = {}
    if dataset_type is not None:
        with DATASETS.switch_scope_and_registry('mmseg') as registry:
            dataset = registry.get(dataset_type)
        if dataset is None:
            raise ValueError(f'dataset_type={dataset_type!r} is not a registered dataset')
        metainfo = getattr(dataset, 'METAINFO', {})
    classes = list(metainfo.get('classes', ()))
    palette = [tuple(int(c) for c in colour) for colour in metainfo.get('palette', ())]
    if len(classes) != len(names):
        classes, palette = list(names), []
    if len(palette) != len(names):
        palette = [tuple(int(c) for c in colour) for colour in make_palette(len(names))]
    return dict(classes=tuple(classes), palette=palette)
