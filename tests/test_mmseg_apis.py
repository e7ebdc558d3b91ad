"""mmsegmentation's own apis and tools on our configs, as a user coming from mmseg types
them: each gives what our own API (segment_images) or tool (tools/test.py) gives."""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import cv2
import mmseg
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import list_dir_or_file
from mmengine.runner import load_checkpoint
from mmseg.apis import MMSegInferencer, inference_model, init_model, show_result_pyplot
from mmseg.visualization import local_visualizer

import sfp
from sfp.apis import init_segmentor, load_preset, segment_images
from sfp.clip import CheckpointError, read_state_dict
from sfp.evaluation import build_test_config, run_test

from .conftest import FIXTURES, REPO, TINY_CKPT

IMAGES = [FIXTURES / 'data' / 'ADEChallengeData2016' / 'images' / 'validation' / name
          for name in ('ADE_val_00000003.jpg', 'ADE_val_00000002.jpg')]
METHODS = ('sfp', 'clearclip')  # SFP and a baseline whose short side is not the base's
MMSEG_TEST_TOOL = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'test.py'
VOC_NAMES = ('background', 'aeroplane', 'bicycle')
# One prompt template instead of CLIP's 80: the text tower is not what these tests test.
TEMPLATES = ['a photo of a {}.']


def config_path(method: str) -> Path:
    return REPO / 'configs' / method / f'{method}_vit-b16_voc21.py'


def tiny_config(method: str) -> Config:
    cfg = Config.fromfile(str(config_path(method)))
    cfg.model.update(clip_path=str(TINY_CKPT), templates=TEMPLATES)
    return cfg


def user_config(config: Path, folder: Path) -> Path:
    """A config file of the user's own over one of ours, on the tiny checkpoint."""
    path = folder / f'my_{config.name}'
    path.write_text(f'_base_ = {str(config)!r}\n'
                    f'model = dict(clip_path={str(TINY_CKPT)!r}, templates={TEMPLATES!r})\n')
    return path


def labels(sample) -> np.ndarray:
    return sample.pred_sem_seg.data[0].cpu().numpy()


@pytest.fixture(scope='module', params=METHODS)
def method(request):
    return request.param


@pytest.fixture(scope='module')
def reference(method):
    """Our own API: the preset of VOC21 for the method, segment_images on each image."""
    segmentor = init_segmentor(str(TINY_CKPT), 'voc21', device='cpu', method=method,
                               templates=TEMPLATES)
    short_side = load_preset('voc21', method).short_side
    return {path.name: labels(segment_images(segmentor, [cv2.imread(str(path))],
                                             short_side=short_side)[0])
            for path in IMAGES}


@pytest.fixture(scope='module')
def model(method):
    return init_model(tiny_config(method), checkpoint=None, device='cpu')


def test_init_model_and_inference_model_equal_segment_images(model, reference):
    assert isinstance(model, sfp.SFPSegmentor)
    assert model.dataset_meta['classes'][:3] == VOC_NAMES  # the config's dataset's names
    one = inference_model(model, str(IMAGES[0]))
    assert np.array_equal(labels(one), reference[IMAGES[0].name])
    # Arrays last: mmseg's inference_model switches the model's pipeline to arrays for good.
    batch = inference_model(model, [cv2.imread(str(p)) for p in IMAGES])
    assert [labels(s).shape for s in batch] == [reference[p.name].shape for p in IMAGES]
    for sample, path in zip(batch, IMAGES):
        assert np.array_equal(labels(sample), reference[path.name])


def test_mmseg_inferencer_on_a_path_an_array_a_list_and_a_folder(method, reference, tmp_path):
    inferencer = MMSegInferencer(model=str(user_config(config_path(method), tmp_path)),
                                 device='cpu')
    assert inferencer.model.dataset_meta['classes'][:3] == VOC_NAMES  # not Cityscapes'
    assert np.array_equal(inferencer(str(IMAGES[0]))['predictions'], reference[IMAGES[0].name])
    listed = inferencer([cv2.imread(str(p)) for p in IMAGES], show=False)['predictions']
    assert len(listed) == len(IMAGES)
    assert all(np.array_equal(a, reference[p.name]) for a, p in zip(listed, IMAGES))

    folder = tmp_path / 'images'
    folder.mkdir()
    for path in IMAGES:
        shutil.copy(path, folder)
    out = tmp_path / 'out'
    found = inferencer(str(folder), out_dir=str(out), show=False)['predictions']
    names = list(list_dir_or_file(folder, list_dir=False))  # the inferencer's own order
    assert sorted(names) == sorted(reference)
    assert all(np.array_equal(a, reference[name]) for a, name in zip(found, names))
    assert inferencer.visualizer.dataset_meta['classes'][:3] == VOC_NAMES
    assert sorted(p.name for p in (out / 'vis').iterdir()) == sorted(names)  # drawn
    saved = sorted((out / 'pred').glob('*_pred.png'))  # numbered in the order of calls
    assert len(saved) == len(names)
    for path, name in zip(saved[-len(names):], names):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), reference[name])


def test_mmseg_visualiser_draws_our_class_names_and_palette(model, monkeypatch, tmp_path):
    result = inference_model(model, cv2.imread(str(IMAGES[0])))
    drawn_names = []
    put_text = local_visualizer.cv2.putText
    monkeypatch.setattr(local_visualizer.cv2, 'putText',
                        lambda img, text, *args: drawn_names.append(text) or
                        put_text(img, text, *args))
    out_file = tmp_path / 'vis.png'
    drawn = show_result_pyplot(model, str(IMAGES[0]), result, opacity=0.5, show=False,
                               out_file=str(out_file))
    found = np.unique(labels(result))
    meta = model.dataset_meta
    assert sorted(drawn_names) == sorted(meta['classes'][c] for c in found)
    assert cv2.imread(str(out_file)).shape == drawn.shape
    # Away from the name tags, each pixel is the image half-blended with its class colour.
    no_labels = show_result_pyplot(model, str(IMAGES[0]), result, opacity=0.5, show=False,
                                   with_labels=False)
    rgb = cv2.imread(str(IMAGES[0]))[:, :, ::-1].astype(float)
    colours = np.array(meta['palette'], dtype=float)[labels(result)]
    assert np.abs(no_labels - (rgb + colours) / 2).max() <= 1
    assert len(meta['palette']) == len(meta['classes']) == 21


def test_dataset_meta_keeps_the_vocabularys_classes():
    model = init_model(tiny_config('sfp'), device='cpu')
    cityscapes = dict(classes=('road', 'sidewalk'), palette=[(1, 2, 3), (4, 5, 6)])
    model.dataset_meta = cityscapes  # what mmseg sets when a checkpoint carries no meta
    assert model.dataset_meta['classes'][:3] == VOC_NAMES
    recoloured = [(i, i, i) for i in range(21)]
    model.dataset_meta = dict(classes=model.dataset_meta['classes'], palette=recoloured)
    assert model.dataset_meta['palette'] == recoloured
    plain = init_segmentor(str(TINY_CKPT), 'voc21', device='cpu', templates=TEMPLATES)
    # No config: the preset's dataset names its classes (VOC's first query is "sky").
    assert plain.dataset_meta['classes'] == tuple(plain.class_names)
    assert plain.dataset_meta['classes'][:3] == VOC_NAMES


def mmseg_test_tool(config: Path, data_root: Path, work_dir: Path, checkpoint: Path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get('PYTHONPATH')])]))
    return subprocess.run(
        [sys.executable, str(MMSEG_TEST_TOOL), str(config), str(checkpoint),
         '--work-dir', str(work_dir), '--out', str(work_dir / 'pred'), '--cfg-options',
         f'test_dataloader.dataset.data_root={data_root}',
         'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'],
        capture_output=True, text=True, cwd=work_dir, env=env)


def two_images_of(root: Path, images: str, annotations: str, target: Path) -> Path:
    """A copy of a data root with its first two images and their annotations."""
    for folder in (images, annotations):
        (target / folder).mkdir(parents=True)
        for path in sorted((root / folder).iterdir())[:2]:
            shutil.copy(path, target / folder)
    return target


@pytest.mark.parametrize('config,data_root,images,annotations', [
    ('sfp/sfp_vit-b16_camvid.py', 'camvid', 'val', 'valannot'),
    ('clearclip/clearclip_vit-b16_ade20k.py', 'ADEChallengeData2016', 'images/validation',
     'annotations/validation'),
])
def test_mmseg_test_tool_gives_our_metrics(config, data_root, images, annotations, tmp_path):
    """mmseg's installed tools/test.py (what `mim test mmseg` runs), with the CLIP file as
    its checkpoint, against our tools/test.py on the same images."""
    assert MMSEG_TEST_TOOL.is_file()
    config = user_config(REPO / 'configs' / config, tmp_path)
    data_root = two_images_of(FIXTURES / 'data' / data_root, images, annotations,
                              tmp_path / 'data')
    (tmp_path / 'mmseg').mkdir()
    theirs = mmseg_test_tool(config, data_root, tmp_path / 'mmseg', TINY_CKPT)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    log = theirs.stdout + theirs.stderr
    assert 'the checkpoint is the CLIP of clip_path' in log
    assert 'missing keys' not in log and 'unexpected key' not in log
    cfg = build_test_config(config, data_root=str(data_root), clip_path=str(TINY_CKPT),
                            work_dir=str(tmp_path / 'ours'),
                            out_dir=str(tmp_path / 'ours' / 'pred'),
                            cfg_options={'test_dataloader.num_workers': 0,
                                         'experiment_name': uuid.uuid4().hex})
    ours = run_test(cfg)
    (record,) = (tmp_path / 'mmseg').glob('*/*.json')
    metrics = json.loads(record.read_text())
    assert {k: metrics[k] for k in ('aAcc', 'mIoU', 'mAcc')} == {
        k: pytest.approx(ours[k], abs=1e-9) for k in ('aAcc', 'mIoU', 'mAcc')}
    maps = sorted(p.name for p in (tmp_path / 'ours' / 'pred').glob('*.png'))
    assert maps and maps == sorted(p.name for p in (tmp_path / 'mmseg' / 'pred').glob('*.png'))
    for name in maps:
        assert np.array_equal(cv2.imread(str(tmp_path / 'ours' / 'pred' / name), -1),
                              cv2.imread(str(tmp_path / 'mmseg' / 'pred' / name), -1)), name


def cat_and_dog(**kwargs) -> sfp.SFPSegmentor:
    return sfp.SFPSegmentor(clip_path=str(TINY_CKPT), name_path=[['cat'], ['dog']],
                            device='cpu', templates=TEMPLATES, **kwargs)


@pytest.fixture(scope='module')
def segmentor():
    return cat_and_dog()


def test_the_clip_file_as_checkpoint_loads_cleanly(segmentor, tmp_path):
    before = {k: v.clone() for k, v in segmentor.state_dict().items()}
    load_checkpoint(segmentor, str(TINY_CKPT), map_location='cpu', strict=True)
    segmentor.load_state_dict(torch.load(TINY_CKPT, weights_only=True))  # torch's way too
    # clip_path's weights saved again as the docs say (how an OpenAI archive is given).
    torch.save(read_state_dict(TINY_CKPT), tmp_path / 'resaved.pth')
    load_checkpoint(segmentor, str(tmp_path / 'resaved.pth'), map_location='cpu', strict=True)
    after = segmentor.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_our_own_weights_load_as_weights(segmentor, tmp_path):
    own = {k: v + 1 for k, v in segmentor.state_dict().items()}
    torch.save(dict(state_dict=own, meta={}), tmp_path / 'own.pth')
    other = cat_and_dog()
    load_checkpoint(other, str(tmp_path / 'own.pth'), map_location='cpu', strict=True)
    assert all(torch.equal(own[k], v) for k, v in other.state_dict().items())


def test_another_clip_or_another_file_is_refused_in_one_line(segmentor, tmp_path):
    clip_weights = torch.load(TINY_CKPT, weights_only=True)
    another = dict(clip_weights, **{'visual.proj': clip_weights['visual.proj'] * 2})
    torch.save(another, tmp_path / 'another_clip.pt')
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(segmentor, str(tmp_path / 'another_clip.pt'), map_location='cpu')
    message = str(refused.value)
    assert '\n' not in message and 'a CLIP other than clip_path' in message
    assert str(TINY_CKPT) in message and 'model.clip_path' in message

    torch.save({'backbone.layer1.weight': torch.zeros(3)}, tmp_path / 'resnet.pth')
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(segmentor, str(tmp_path / 'resnet.pth'), map_location='cpu')
    message = str(refused.value)
    assert '\n' not in message and 'neither this segmentor' in message
    assert 'backbone.layer1.weight' in message and 'encoder.visual.' in message


@pytest.mark.parametrize('argument,value,expected', [
    ('pretrained', 'open-mmlab://resnet50', "pretrained='open-mmlab://resnet50': the CLIP "
                                            "weights come from clip_path; set clip_path="),
    ('train_cfg', dict(), None),
    ('train_cfg', dict(mode='whole'), 'train_cfg: SFP is training-free'),
    ('test_cfg', dict(mode='slide', crop_size=(224, 224)), 'the window is set by slide_crop'),
])
def test_mmseg_segmentor_arguments(argument, value, expected):
    if expected is None:
        assert isinstance(cat_and_dog(**{argument: value}), sfp.SFPSegmentor)  # nothing meant
        return
    with pytest.raises(ValueError) as refused:
        cat_and_dog(**{argument: value})
    assert expected in str(refused.value) and '\n' not in str(refused.value)


def test_every_config_reads_images_as_mmseg_expects():
    """inference_model reads test_pipeline[0]; MMSegInferencer looks for LoadImageFromFile in
    the dataset's pipeline. tools/test.py reads with LoadImageChecked in its place."""
    # _base_ and _protocols_ hold fragments, not whole configs.
    configs = sorted(p for p in (REPO / 'configs').glob('*/*.py')
                     if not p.parent.name.startswith('_'))
    assert len(configs) > 50
    for path in configs:
        cfg = Config.fromfile(str(path))
        assert cfg.custom_imports.imports == ['sfp'], path
        assert cfg.test_pipeline[0].type == 'LoadImageFromFile', path
        assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile', path
    ours = build_test_config(config_path('sfp'))
    assert ours.test_dataloader.dataset.pipeline[0].type == 'LoadImageChecked'
