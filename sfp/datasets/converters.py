"""Label-map converters for COCO-Object and PASCAL Context.

Every converter writes PNG label maps atomically, is idempotent (an existing identical
map is left alone) and refuses to replace a different existing map unless told to.

COCO-Object from instance annotations (:func:`coco_object_mask`):
    label 0 is background, 1..80 are COCO's thing categories in increasing category id
    (the order of ``COCO_OBJECT_CLASSES``).  Overlaps: instances are painted in the
    order of the annotation file, a later one over an earlier one (as COCO-Stuff's own
    tooling).  Crowd regions (``iscrowd=1``) are painted first, so individual instances
    stay on top, with ``crowd='ignore'`` (255, excluded from the metric; default),
    ``'class'`` (their category) or ``'background'`` (0).
COCO-Object from COCO-Stuff ``stuffthingmaps`` (:func:`coco_object_from_stuffthing`):
    thing ids become 1..80, every stuff id and the unlabelled 255 become background 0:
    the masks behind the published COCO-Object numbers.
PASCAL Context (:func:`context_label_map`):
    the official ``trainval/*.mat`` label maps (459 categories, ``LabelMap``) reduced to
    the 59 evaluated classes, numbered 1..59 in alphabetical order; everything else is
    background 0 (Context-60 keeps it, Context-59 ignores it via reduce_zero_label).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from ..utils import atomic_write_png

PathLike = Union[str, Path]
IGNORE = 255
CROWD_MODES = ('ignore', 'class', 'background')

# Category ids of the 59 PASCAL Context classes among the 459 of labels.txt, ascending
# (= alphabetical: aeroplane 2, bag 9, bed 18, ... wood 458).
CONTEXT59_IDS = (2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98,
                 104, 105, 113, 115, 144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259,
                 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355, 360, 366, 368, 397, 415,
                 416, 420, 424, 427, 440, 445, 454, 458)


# COCO's 80 thing category ids (1..90 with gaps).
COCO_THING_IDS = tuple(i for i in range(1, 91) if i not in
                       (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


class OutputConflictError(FileExistsError):
    """An existing output differs from what the converter would write."""


def write_label_map(path: Path, labels: np.ndarray, overwrite: bool = False) -> str:
    """Write a uint8 label map as PNG unless an identical one is there.

    Returns 'written', 'unchanged' or 'replaced'; raises :class:`OutputConflictError`
    for a different existing file when ``overwrite`` is False.
    """
    status = 'written'
    if path.exists():
        existing = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if existing is not None and existing.shape == labels.shape and np.array_equal(
                existing, labels):
            return 'unchanged'
        if not overwrite:
            raise OutputConflictError(
                f'{path} exists and differs from the converted labels; remove it or pass '
                f'--overwrite to replace it')
        status = 'replaced'
    atomic_write_png(path, labels)
    return status


def convert_all(items: Sequence, convert: Callable[[object], Tuple[Path, np.ndarray]],
                overwrite: bool, desc: str) -> dict:
    """Run ``convert`` on each item with a progress bar; count what happened."""
    counts = {'written': 0, 'unchanged': 0, 'replaced': 0}
    for item in tqdm(items, desc=desc, unit='map'):
        path, labels = convert(item)
        counts[write_label_map(path, labels, overwrite)] += 1
    return counts


# -- COCO-Object ------------------------------------------------------------------------
def coco_category_labels(category_ids: Iterable[int]) -> dict:
    """COCO category id -> COCO-Object label (1..80, by increasing id)."""
    return {cat: label for label, cat in enumerate(sorted(category_ids), start=1)}


def coco_object_mask(coco, image_id: int, labels: dict, crowd: str = 'ignore') -> np.ndarray:
    """COCO-Object label map (H, W) uint8 of one image from a ``pycocotools`` COCO."""
    if crowd not in CROWD_MODES:
        raise ValueError(f'crowd must be one of {", ".join(CROWD_MODES)}, got {crowd!r}')
    info = coco.imgs[image_id]
    mask = np.zeros((info['height'], info['width']), dtype=np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    crowd_value = {'ignore': lambda a: IGNORE, 'class': lambda a: labels[a['category_id']],
                   'background': lambda a: 0}[crowd]
    for ann in sorted(anns, key=lambda a: not a.get('iscrowd', 0)):  # stable: crowds first
        value = crowd_value(ann) if ann.get('iscrowd', 0) else labels[ann['category_id']]
        mask[coco.annToMask(ann).astype(bool)] = value
    return mask


def convert_coco_instances(ann_file: PathLike, out_dir: PathLike, split: str = 'val2017',
                           crowd: str = 'ignore', overwrite: bool = False) -> dict:
    """Masks ``<out_dir>/annotations/<split>/<stem>_instanceTrainIds.png`` for every image
    of a COCO instances JSON."""
    from pycocotools.coco import COCO

    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f'COCO annotation file not found: {ann_file} (expected e.g. '
                                f'annotations/instances_val2017.json)')
    coco = COCO(str(ann_file))
    if len(coco.cats) != 80:
        raise ValueError(f'{ann_file} has {len(coco.cats)} categories; COCO-Object needs '
                         f'the 80 thing categories of COCO instances annotations')
    labels = coco_category_labels(coco.cats)
    target = Path(out_dir) / 'annotations' / split

    def convert(image_id):
        stem = Path(coco.imgs[image_id]['file_name']).stem
        return (target / f'{stem}_instanceTrainIds.png',
                coco_object_mask(coco, image_id, labels, crowd))

    return convert_all(sorted(coco.imgs), convert, overwrite, 'COCO-Object masks')


def stuffthing_lookup(thing_ids: Optional[Iterable[int]] = None) -> np.ndarray:
    """256-entry table from stuffthingmaps values to COCO-Object labels.

    stuffthingmaps store COCO category id - 1; thing categories map to 1..80, all other
    values (stuff, unlabelled 255) to background 0.
    """
    thing_ids = thing_ids or COCO_THING_IDS
    table = np.zeros(256, dtype=np.uint8)
    for cat, label in coco_category_labels(thing_ids).items():
        table[cat - 1] = label
    return table


def coco_object_from_stuffthing(stuffthing: np.ndarray) -> np.ndarray:
    """COCO-Stuff stuffthingmap (H, W) uint8 -> COCO-Object labels (H, W) uint8."""
    return stuffthing_lookup()[stuffthing]


def convert_stuffthingmaps(map_dir: PathLike, out_dir: PathLike, split: str = 'val2017',
                           overwrite: bool = False) -> dict:
    """Masks from ``stuffthingmaps_trainval2017/<split>/*.png``."""
    map_dir = Path(map_dir)
    files = sorted(map_dir.glob('*.png'))
    if not files:
        raise FileNotFoundError(f'no PNG label map in {map_dir} (expected COCO-Stuff '
                                f'stuffthingmaps_trainval2017/{split}/*.png)')
    target = Path(out_dir) / 'annotations' / split

    def convert(path):
        stuffthing = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if stuffthing is None or stuffthing.ndim != 2:
            raise ValueError(f'{path} is not a single-channel label map')
        return target / f'{path.stem}_instanceTrainIds.png', coco_object_from_stuffthing(
            stuffthing)

    return convert_all(files, convert, overwrite, 'COCO-Object masks')


# -- PASCAL Context ---------------------------------------------------------------------
def context_lookup() -> np.ndarray:
    """Table from the 459 Context category ids (0..459) to 0..59 labels."""
    table = np.zeros(460, dtype=np.uint8)
    for label, cat in enumerate(CONTEXT59_IDS, start=1):
        table[cat] = label
    return table


def context_label_map(label_map: np.ndarray) -> np.ndarray:
    """A 459-category ``LabelMap`` (H, W) -> Context labels 0..59 (H, W) uint8."""
    if label_map.min() < 0 or label_map.max() > 459:
        raise ValueError(f'LabelMap values must be category ids 0..459, got '
                         f'{label_map.min()}..{label_map.max()}')
    return context_lookup()[label_map.astype(np.int64)]


def convert_context(mat_dir: PathLike, out_dir: PathLike, split_file: Optional[PathLike] = None,
                    overwrite: bool = False) -> dict:
    """``SegmentationClassContext`` PNGs from the official ``trainval/*.mat`` files
    (only the images of ``split_file`` when given)."""
    from scipy.io import loadmat

    mat_dir = Path(mat_dir)
    if split_file:
        names = [n.strip() for n in Path(split_file).read_text().splitlines() if n.strip()]
        files = [mat_dir / f'{n}.mat' for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f'{len(missing)} .mat file(s) of {split_file} are missing '
                                    f'in {mat_dir}, e.g. {missing[0]}')
    else:
        files = sorted(mat_dir.glob('*.mat'))
    if not files:
        raise FileNotFoundError(f'no .mat label file in {mat_dir} (expected the official '
                                f'PASCAL-Context trainval/*.mat)')
    target = Path(out_dir)

    def convert(path):
        try:
            label_map = loadmat(str(path))['LabelMap']
        except (KeyError, ValueError, OSError) as err:
            raise ValueError(f'{path} is not a PASCAL-Context label file with a LabelMap: '
                             f'{err}') from err
        return target / f'{path.stem}.png', context_label_map(label_map)

    return convert_all(files, convert, overwrite, 'Context label maps')
