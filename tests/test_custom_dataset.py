"""The no-code custom-dataset recipe of docs/evaluate.md works for every method: the
recipe as the page writes it, its first `_base_` entry switched to each method's model
base, builds the CamVid sample and a model that segments with its vocabulary; the demo's
CamVid preset works with every method."""
import re

import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from sfp.apis import available_methods, load_preset, method_defaults, method_vfm
from sfp.benchmarks import BENCHMARKS
from sfp.evaluation import build_test_config
from sfp.text import read_class_names

from .conftest import FIXTURES, REPO, TINY_CKPT, TINY_DINO, TINY_SAM

PAGE = REPO / 'docs' / 'evaluate.md'
CAMVID = FIXTURES / 'data' / 'camvid'
BASE = re.compile(r"'\.\./_base_/models/(\w+)_vit-b16\.py'")


def tiny_vfm(method: str) -> str:
    """The tests' tiny tower of the family of the method's default VFM ('dino_vitb8' ->
    tiny_dino_*.pth, 'dinov2_...' -> tiny_dinov2_*.pth ...), DINO's when none."""
    family = str(method_vfm(method)).split('_')[0]
    return str(next(iter(sorted(FIXTURES.glob(f'tiny_{family}_*.pth'))), TINY_DINO))


def recipe() -> str:
    """The page's recipe: the python block of its 'Your own dataset' section."""
    section = PAGE.read_text().split('## Your own dataset, no code', 1)[1]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """The recipe for every method, written where its relative paths hold."""
    root = tmp_path_factory.mktemp('recipe') / 'configs'
    (root / 'mine').mkdir(parents=True)
    for shared in ('_base_', 'classnames'):
        (root / shared).symlink_to(REPO / 'configs' / shared)
    text = recipe()
    assert len(BASE.findall(text)) == 1, 'the recipe picks its method in one _base_ entry'
    paths = {}
    for method in available_methods():
        paths[method] = root / 'mine' / f'{method}_vit-b16_camvid.py'
        paths[method].write_text(BASE.sub(f"'../_base_/models/{method}_vit-b16.py'", text))
    return paths


def test_the_recipe_builds_the_dataset(configs):
    cfg = build_test_config(configs['sfp'], data_root=str(CAMVID))
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(dataset) == 6 and dataset.metainfo['classes'][0] == 'sky'
    assert cfg.test_evaluator.ignore_index == 11


@pytest.mark.parametrize('method', available_methods())
def test_the_recipe_runs_every_method(configs, method):
    cfg = build_test_config(configs[method], data_root=str(CAMVID), clip_path=str(TINY_CKPT),
                            vfm_path=tiny_vfm(method), sam_path=str(TINY_SAM),
                            cfg_options={'model.templates': ['a photo of a {}.']})
    if method_defaults(method).get('masks', False) is None:  # reads mask files (CorrCLIP):
        cfg.model.masks = dict(type='PanopticCut', vfm_path=tiny_vfm(method), imgsize=64,
                               N=2)  # LaVG's cut, small, instead
    elif isinstance(cfg.model.get('masks'), dict):  # LaVG's own cut, small (640 / 8 rounds)
        cfg.model.masks = dict(cfg.model.masks, imgsize=64, N=2)
    model = cfg.model.to_dict()
    assert model['name_path'].endswith('cls_camvid.txt')
    assert model['encoder'] == method_defaults(method)['encoder']  # the method's own
    assert (model.get('vfm_path') == tiny_vfm(method)) == bool(method_vfm(method))
    init_default_scope('mmseg')
    segmentor = MODELS.build(cfg.model)
    torch.manual_seed(0)
    labels = segmentor.predict(torch.randn(1, 3, 64, 96))[0].pred_sem_seg.data
    assert labels.shape == (1, 64, 96) and int(labels.max()) < 11
    assert segmentor.class_names == [s[0] for s in read_class_names(
        BENCHMARKS['camvid'].class_file)]


@pytest.mark.parametrize('method', available_methods())
def test_the_camvid_preset_serves_every_method(method):
    preset = load_preset('camvid', method)
    assert len(preset.classes) == 11 and preset.display_names[0] == 'sky'
    if not BENCHMARKS['camvid'].config(method).is_file():
        expected = method_defaults(method)
        assert preset.model_kwargs['encoder'] == expected['encoder']
