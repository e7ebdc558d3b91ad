"""ProxyCLIP with DINOv2 and with SAM as its vision foundation model, against the release's
golden outputs (float64, tiny CLIP, tiny DINOv2 with registers, tiny SAM) through the named
configs with only ``vfm_path`` set to the tiny file; the VFM's kind comes from the file.
SAM's features of crop 0 (a 336 crop stretched to 1024: a 64 x 64 grid, not a multiple of
its 14 x 14 windows) are compared as the segmentor computes them.  Every variant config
builds and segments an image."""
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from sfp.models import postprocess_logits
from sfp.vfm import DINOv2VisionTransformer, SAMImageEncoder, load_vfm

from .conftest import FIXTURES, REPO, TINY_CKPT, TINY_DINOV2, TINY_SAM, sample
from .test_methods import MEAN, SETTINGS, STD
from .test_proxyclip import BENCHMARKS, config_segments

DATA = np.load(FIXTURES / 'proxyclip_towers_compact.npz')
META = json.loads(DATA['meta'].tobytes())
TOL = 1e-9
# vfm file -> (golden, config name part, tower class, its grid for a 336 crop)
TOWERS = {'dinov2': (TINY_DINOV2, 'proxyclip_dinov2', 'dinov2-b14-reg',
                     DINOv2VisionTransformer, (24, 24)),
          'sam': (TINY_SAM, 'proxyclip_sam', 'sam-b', SAMImageEncoder, (64, 64))}


def tensor(key):
    return torch.from_numpy(DATA[key])


def config(variant, benchmark):
    return Config.fromfile(str(REPO / 'configs' / 'proxyclip' /
                               f'proxyclip_vit-b16_{variant}_{benchmark}.py'))


def golden_model(kind):
    """The VOC21 config of a VFM on the tiny weights in float64, checked to hold the
    golden case's settings."""
    path, golden, variant, tower, _ = TOWERS[kind]
    case = META[golden]['case']
    params = case['params']
    cfg = config(variant, 'voc21')
    assert {k: cfg.model.get(k) for k in SETTINGS} == {
        k: (params[k] or 0) if k == 'pamr_steps' else params[k] for k in SETTINGS}
    assert (cfg.model.pad_crops, cfg.model.encoder.beta, cfg.model.encoder.gamma) == (
        params['pad_multiple'], params['beta'], params['gamma'])
    assert cfg.model.vfm_path == {'dinov2': params.get('vfm_hub', [''])[-1],
                                  'sam': 'sam_vit_b'}[kind]
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=str(path), device='cpu',
                     precision='fp64', return_probs=True)
    seg = MODELS.build(cfg.model)
    assert type(seg.encoder.vfm) is tower
    return seg, case


@pytest.mark.parametrize('kind, images', [('dinov2', (0, 1)), ('sam', (0,))])
def test_release_outputs_are_reproduced(kind, images):
    """Crop 0's VFM tokens and CLIP features (captured as the segmentor runs), logits at
    the golden's sample pixels, both label maps; SAM's windows cost seconds in float64,
    so it runs the first image (its three crops)."""
    seg, case = golden_model(kind)
    prefix = f'{TOWERS[kind][1]}/{case["name"]}'
    assert seg.query_idx.tolist() == case['query_idx']
    assert (seg.query_features - tensor(f'{prefix}/query_features')).abs().max() <= TOL
    seen = {}

    def keep(name):
        def hook(module, args, out):  # the first batch of an image holds its crop 0
            seen.setdefault(name, out)
        return hook

    hooks = [seg.encoder.vfm.register_forward_hook(keep('vfm')),
             seg.encoder.register_forward_hook(keep('clip'))]
    try:
        for i in images:
            image = case['images'][i]
            pixels = (tensor(image['resized']).flip(0).double() - MEAN) / STD  # stored BGR
            ori_shape = tuple(image['ori_shape'])
            seen.clear()
            logits = seg.inference(pixels[None], [dict(ori_shape=ori_shape)])[0]
            assert tuple(image['crop0_box']) == (0, 336, 0, 336)
            vfm = seen['vfm'][0]
            vfm = vfm.flatten(1).t() if kind == 'sam' else vfm[seg.encoder.vfm.num_prefix_tokens:]
            assert [vfm.shape[1], *seen['clip'].grid] == image['crop0_vfm_shape']
            index = tensor(f'{prefix}/{i}/crop0_vfm_idx')
            assert (vfm[index] - tensor(f'{prefix}/{i}/crop0_vfm_feats')).abs().max() <= 1e-12
            rows = tensor(f'{prefix}/{i}/crop0_feature_idx')
            assert (seen['clip'].features[0, rows] - tensor(f'{prefix}/{i}/crop0_features')
                    ).abs().max() <= TOL
            got = sample(logits, tensor(f'{prefix}/{i}/sample_yx'))
            assert (got - tensor(f'{prefix}/{i}/logits')).abs().max() <= TOL
            pred = seg.postprocess_result([logits], [SegDataSample(
                metainfo=dict(ori_shape=ori_shape))])[0].pred_sem_seg.data[0]
            assert torch.equal(pred, tensor(f'{prefix}/{i}/pred').long())
            _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes,
                                          seg.logit_scale)
            assert torch.equal(plain[0], tensor(f'{prefix}/{i}/pred_no_thd').long())
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture(scope='module')
def towers():
    """Each tiny tower loaded once, in float32, for the configs to share."""
    return {kind: load_vfm(path) for kind, (path, *_) in TOWERS.items()}


@pytest.mark.parametrize('kind', list(TOWERS))
@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_variant_config_builds_and_segments(towers, kind, benchmark):
    _, _, variant, tower, grid = TOWERS[kind]
    name = f'proxyclip_vit-b16_{variant}_{benchmark}'
    assert config(variant, benchmark).model.vfm_path == {
        'dinov2': 'dinov2_vitb14_reg', 'sam': 'sam_vit_b'}[kind]
    seg = config_segments(name, towers[kind], (60, 90))
    assert type(seg.encoder.vfm) is tower
    assert seg.encoder.vfm.grid_size(*seg.encoder.vfm_input_size(336, 336)) == grid
    assert seg.encoder.fixed_grid == (grid if kind == 'sam' else None)
