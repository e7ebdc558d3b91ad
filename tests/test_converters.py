"""Dataset converters against label maps computed independently here."""
import json
import shutil

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy.io import savemat

from sfp.datasets import COCO_OBJECT_CLASSES, converters

from .conftest import FIXTURES

COCO_MINI = FIXTURES / 'data' / 'coco_mini'
ANN_FILE = COCO_MINI / 'annotations' / 'instances_val2017.json'


def rasterise(segmentation, height, width):
    """Binary mask of a COCO segmentation (polygons, RLE or uncompressed RLE)."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.decode(rles).max(axis=2).astype(bool)
    if isinstance(segmentation['counts'], list):
        segmentation = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(segmentation).astype(bool)


def expected_masks(crowd_value):
    """The documented rule, written independently: crowds first, then instances in file
    order (later wins); labels 1..80 by increasing category id."""
    data = json.loads(ANN_FILE.read_text())
    labels = {c['id']: i for i, c in enumerate(sorted(data['categories'],
                                                      key=lambda c: c['id']), start=1)}
    masks = {}
    for image in data['images']:
        h, w = image['height'], image['width']
        mask = np.zeros((h, w), np.uint8)
        anns = [a for a in data['annotations'] if a['image_id'] == image['id']]
        for ann in [a for a in anns if a['iscrowd']] + [a for a in anns if not a['iscrowd']]:
            value = crowd_value(labels[ann['category_id']]) if ann['iscrowd'] else \
                labels[ann['category_id']]
            mask[rasterise(ann['segmentation'], h, w)] = value
        masks[image['file_name'].replace('.jpg', '_instanceTrainIds.png')] = mask
    return masks


def read_maps(folder):
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in folder.glob('*.png')}


def test_category_order_matches_the_class_names():
    data = json.loads(ANN_FILE.read_text())
    cats = sorted(data['categories'], key=lambda c: c['id'])
    assert tuple(c['id'] for c in cats) == converters.COCO_THING_IDS
    assert tuple(c['name'] for c in cats) == COCO_OBJECT_CLASSES[1:]


@pytest.mark.parametrize('crowd,crowd_value', [('ignore', lambda label: 255),
                                               ('class', lambda label: label),
                                               ('background', lambda label: 0)])
def test_coco_object_from_instances(tmp_path, crowd, crowd_value):
    counts = converters.convert_coco_instances(ANN_FILE, tmp_path, crowd=crowd)
    assert counts == {'written': 8, 'unchanged': 0, 'replaced': 0}
    produced = read_maps(tmp_path / 'annotations' / 'val2017')
    expected = expected_masks(crowd_value)
    assert produced.keys() == expected.keys()
    for name, mask in expected.items():
        assert np.array_equal(produced[name], mask), name
    if crowd == 'ignore':
        assert sum((m == 255).sum() for m in produced.values()) > 0  # crowds are present


def test_converter_is_idempotent_and_refuses_to_overwrite(tmp_path):
    converters.convert_coco_instances(ANN_FILE, tmp_path)
    again = converters.convert_coco_instances(ANN_FILE, tmp_path)
    assert again == {'written': 0, 'unchanged': 8, 'replaced': 0}
    with pytest.raises(converters.OutputConflictError, match='differs.*--overwrite'):
        converters.convert_coco_instances(ANN_FILE, tmp_path, crowd='class')
    replaced = converters.convert_coco_instances(ANN_FILE, tmp_path, crowd='class',
                                                 overwrite=True)
    assert replaced['replaced'] == 3 and replaced['unchanged'] == 5  # the 3 crowd images


def test_coco_object_from_stuffthingmaps(tmp_path):
    maps = tmp_path / 'stuffthingmaps' / 'val2017'
    maps.mkdir(parents=True)
    # stuffthingmaps hold category id - 1: 0 person, 2 car, 89 toothbrush (id 90), 91+ stuff.
    stuffthing = np.array([[0, 2, 89], [91, 181, 255]], np.uint8)
    cv2.imwrite(str(maps / '000000000001.png'), stuffthing)
    converters.convert_stuffthingmaps(maps, tmp_path / 'out')
    out = cv2.imread(str(tmp_path / 'out' / 'annotations' / 'val2017' /
                         '000000000001_instanceTrainIds.png'), cv2.IMREAD_UNCHANGED)
    assert out.tolist() == [[1, 3, 80], [0, 0, 0]]


def test_context_from_official_mat_files(tmp_path):
    mats = tmp_path / 'trainval'
    mats.mkdir()
    # 2 aeroplane -> 1, 9 bag -> 2, 458 wood -> 59, 1 accordion (not among 59) -> 0.
    savemat(mats / '2008_000002.mat', {'LabelMap': np.array([[2, 9], [458, 1]], np.uint16)})
    savemat(mats / '2008_000003.mat', {'LabelMap': np.array([[0, 284]], np.uint16)})
    (tmp_path / 'val.txt').write_text('2008_000002\n')
    out = tmp_path / 'SegmentationClassContext'
    counts = converters.convert_context(mats, out, tmp_path / 'val.txt')
    assert counts['written'] == 1 and [p.name for p in out.iterdir()] == ['2008_000002.png']
    assert cv2.imread(str(out / '2008_000002.png'), cv2.IMREAD_UNCHANGED).tolist() == \
        [[1, 2], [59, 0]]
    converters.convert_context(mats, out)
    person = cv2.imread(str(out / '2008_000003.png'), cv2.IMREAD_UNCHANGED)
    assert person.tolist() == [[0, 37]]  # person is the 37th of the 59 classes


def test_converter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='instances_val2017.json'):
        converters.convert_coco_instances(tmp_path / 'nope.json', tmp_path)
    with pytest.raises(FileNotFoundError, match='no .mat label file'):
        converters.convert_context(tmp_path, tmp_path / 'out')
    (tmp_path / 'val.txt').write_text('2008_000009\n')
    with pytest.raises(FileNotFoundError, match='1 .mat file.*missing'):
        converters.convert_context(tmp_path, tmp_path / 'out', tmp_path / 'val.txt')


def test_coco_converter_cli_links_images(tmp_path):
    import subprocess
    import sys
    out = tmp_path / 'coco_object'
    cmd = [sys.executable, 'tools/dataset_converters/coco_object.py', 'instances',
           '--ann', str(ANN_FILE), '--images', str(COCO_MINI / 'val2017'), '--out', str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=FIXTURES.parents[1])
    assert result.returncode == 0, result.stderr
    assert '8 written' in result.stdout
    assert len(list((out / 'images' / 'val2017').glob('*.jpg'))) == 8
    shutil.rmtree(out / 'annotations')
