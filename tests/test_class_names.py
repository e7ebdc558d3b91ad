"""A class's name is its dataset's name for it (VOC's and COCO-Object's class 0 is
"background"), whatever its queries are; checked for every benchmark and every method's
class file against the datasets' own names (mmseg's dataset classes, COCO's annotations)."""
import json

import pytest
from mmseg.datasets import (
    ADE20KDataset,
    CityscapesDataset,
    COCOStuffDataset,
    PascalContextDataset,
    PascalVOCDataset,
)

from sfp.apis import available_methods, init_segmentor, load_preset
from sfp.benchmarks import BENCHMARKS
from sfp.models import SFPSegmentor
from sfp.text import read_class_names

from .conftest import FIXTURES, TINY_CKPT


def coco_object_names():
    annotations = FIXTURES / 'data' / 'coco_mini' / 'annotations' / 'instances_val2017.json'
    categories = json.loads(annotations.read_text())['categories']
    return ['background'] + [c['name'] for c in sorted(categories, key=lambda c: c['id'])]


def dataset_names(benchmark):
    voc = list(PascalVOCDataset.METAINFO['classes'])
    context = list(PascalContextDataset.METAINFO['classes'])
    return {
        'voc21': lambda: voc, 'voc20': lambda: voc[1:],
        'context60': lambda: context, 'context59': lambda: context[1:],
        'coco_object': coco_object_names,
        'coco_stuff164k': lambda: list(COCOStuffDataset.METAINFO['classes']),
        'cityscapes': lambda: list(CityscapesDataset.METAINFO['classes']),
        'ade20k': lambda: list(ADE20KDataset.METAINFO['classes']),
        # CamVid is read as a custom dataset: its class file is its definition.
        'camvid': lambda: [s[0] for s in read_class_names(BENCHMARKS['camvid'].class_file)],
    }[benchmark]()


PAIRS = [(b, m) for b in BENCHMARKS for m in available_methods()
         if BENCHMARKS[b].config(m).is_file()]


def test_every_benchmark_is_checked():
    assert {b for b, _ in PAIRS} == set(BENCHMARKS)
    assert len(coco_object_names()) == 81


@pytest.mark.parametrize('benchmark', sorted(BENCHMARKS))
def test_each_methods_preset_names_the_datasets_classes(benchmark):
    expected = dataset_names(benchmark)
    for method in [m for b, m in PAIRS if b == benchmark]:
        preset = load_preset(benchmark, method)
        assert preset.display_names == expected, method
        assert len(preset.classes) == len(expected), method


@pytest.mark.parametrize('benchmark, method', [('voc21', 'sfp'), ('coco_object', 'cliptrase')])
def test_a_preset_segmentor_names_its_classes_as_the_dataset(benchmark, method):
    """VOC's background line starts with the query "sky", CLIPtrase's COCO-Object one
    with "textile": neither is the class's name."""
    segmentor = init_segmentor(str(TINY_CKPT), benchmark, method=method, device='cpu',
                               templates=['a photo of a {}.'])
    expected = dataset_names(benchmark)
    assert segmentor.class_names == expected
    assert list(segmentor.dataset_meta['classes']) == expected
    assert segmentor.class_names[0] == 'background'


def test_given_class_names_must_match_the_classes():
    with pytest.raises(ValueError, match='gives 1 names for the 2 classes'):
        SFPSegmentor(clip_path=str(TINY_CKPT), name_path=[['cat'], ['dog']],
                     class_names=['cat'], device='cpu')
