"""LaVG against its release's golden outputs (../shared/golden/vfm/lavg.pt, float64, tiny
CLIP and tiny DINO ViT/8): stage 1, the panoptic cut, through tools/generate_masks.py
(file by file) and round by round (keys, eigenvectors to the solver's tolerance, cuts,
seeds, CRF maps); stage 2 on those masks through the VOC21 and VOC20 configs."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from sfp.masks import PanopticCut, RegionMasks, read_rgb
from sfp.methods import ground_in_regions
from sfp.models import postprocess_logits

from .conftest import REPO, SHARED, TINY_CKPT, TINY_DINO, sample

GOLDEN_FILE = SHARED / 'golden' / 'vfm' / 'lavg.pt'
pytestmark = pytest.mark.skipif(not GOLDEN_FILE.is_file(), reason='needs ../shared/golden')
TOL = 1e-9
MEAN = torch.tensor([122.771, 116.746, 104.094], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323], dtype=torch.float64).view(3, 1, 1)


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN_FILE, weights_only=False)


def image_file(entry):
    return SHARED / 'data' / entry['file']


def mask_name(entry):
    return Path(entry['file']).name.split('.')[0] + '.pth'


@pytest.fixture(scope='module')
def mask_folder(golden, tmp_path_factory):
    """Stage 1 of the first image by the tool (its options as the golden's), the second
    image's golden file beside it: the folder stage 2 reads."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('generate_masks',
                                                  REPO / 'tools' / 'generate_masks.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    folder = tmp_path_factory.mktemp('lavg_masks')
    first, second = golden['panoptic_cut']['images']
    params = golden['panoptic_cut']['params']
    assert tool.main([str(image_file(first)), '--out-dir', str(folder), '--vfm-path',
                      str(TINY_DINO), '--imgsize', str(params['imgsize']), '--N',
                      str(params['N']), '--tau', str(params['tau'])]) == 0
    torch.save(second['maskpred'], folder / mask_name(second))
    return folder


def test_stage1_files_by_the_tool(golden, mask_folder):
    first = golden['panoptic_cut']['images'][0]
    written = torch.load(mask_folder / mask_name(first), weights_only=True)
    assert written.dtype == torch.uint8 and torch.equal(written, first['maskpred'])


def test_stage1_round_by_round(golden):
    """Every step of the panoptic cut of the second image (one of its masks is emptied by
    the CRF's keep test)."""
    params = golden['panoptic_cut']['params']
    entry = golden['panoptic_cut']['images'][1]
    cut = PanopticCut(str(TINY_DINO), imgsize=params['imgsize'], N=params['N'],
                      tau=params['tau'], precision='fp64').cut(read_rgb(image_file(entry)))
    assert hashlib.sha256(cut.image.tobytes()).hexdigest() == entry['image_sha256']
    assert (cut.dino_input[0, :, ::37, ::41] - entry['dino_input_samples']).abs().max() <= 1e-15
    keys = cut.keys.t()[entry['feat_idx']]
    assert (keys - entry['feats']).abs().max() <= 1e-12 * entry['feats'].abs().max()
    assert len(cut.rounds) == len(entry['iterations']) == entry['n_masks']
    for got, want in zip(cut.rounds, entry['iterations']):
        assert torch.equal(got.unoccupied, want['unoccupied'])
        assert (got.eigenvalues - want['eigvals']).abs().max() <= 1e-12
        # The golden's vectors are lobpcg's (tolerance 1.5e-8); these are exact.
        assert (got.eigenvector - want['eigvec']).abs().max() <= 2e-6 * want['eigvec'].abs().max()
        assert torch.equal(got.bipartition, want['bipartition_final'])
        assert got.seed == want['seed'] and torch.equal(got.mask, want['ncut_mask'])
    for got, want in zip(cut.refinements, entry['crf']):
        assert np.array_equal(got.crf_map, want['crf_map'].numpy())
        assert np.array_equal(got.filled, want['filled'].numpy())
        assert got.iou == want['iou'] and got.kept == want['kept']
    assert [r.kept for r in cut.refinements] == [True, False, True]
    assert np.array_equal(cut.masks, entry['maskpred'][:-1].numpy())


def test_grounding_with_overlapping_masks():
    """A mask's mean covers all its pixels, those an earlier mask wins included."""
    logits = torch.arange(12, dtype=torch.float64).view(1, 3, 4)
    layers = torch.zeros(2, 3, 4, dtype=torch.bool)
    layers[0, 0] = True  # row 0: mean 1.5
    layers[1, :2, :] = True  # rows 0-1: mean 3.5; row 0 goes to mask 0
    out = ground_in_regions(logits, RegionMasks.from_layers(layers))
    assert out[0, 0].tolist() == [1.5] * 4 and out[0, 1].tolist() == [3.5] * 4
    assert out[0, 2].tolist() == [9.5] * 4  # the background: the rest


@pytest.mark.parametrize('case_index, benchmark', [(0, 'voc21'), (1, 'voc20')])
def test_stage2_release_outputs(golden, mask_folder, case_index, benchmark):
    case = golden['cases'][case_index]
    cfg = Config.fromfile(str(REPO / 'configs' / 'lavg' / f'lavg_vit-b16_{benchmark}.py'))
    model = cfg.model
    params = case['params']
    assert (model.logit_scale, model.prob_thd, model.area_thd) == (
        params['logit_scale'], params['prob_thd'], params['area_thd'])
    assert model.encoder.get('remove_falsefg') == params['remove_falsefg']
    model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), device='cpu',
                 maskpred_root=str(mask_folder), precision='fp64', return_probs=True)
    seg = MODELS.build(model)
    assert seg.query_idx.tolist() == case['query_idx']
    assert (seg.query_features - case['query_features']).abs().max() <= TOL
    assert seg.encoder.background_queries == params['bgidx']
    for image in case['images']:
        x = (image['resized'].flip(0).double() - MEAN) / STD
        meta = dict(ori_shape=tuple(image['ori_shape']), img_path=image['file'])
        y1, y2, x1, x2 = image['crop0_box']
        window = seg.image_regions([x], [meta])[0].window(y1, y2, x1, x2)
        pixels = torch.cat([window.masks(), window.unsegmented()[None]]).sum((1, 2))
        assert torch.equal(pixels, image['crop0_mask_pixels'])
        out = seg.encoder(x[None, :, y1:y2, x1:x2], None, [window])
        assert (out.features[0] - image['crop0_features']).abs().max() <= TOL
        got = sample(out.logits[0], image['crop0_sample_yx'])
        assert (got - image['crop0_logits_at_samples']).abs().max() <= TOL
        logits = seg.inference(x[None], [meta])[0]
        assert (sample(logits, image['sample_yx']) - image['logits_at_samples']).abs().max() \
            <= TOL
        _, labels = postprocess_logits(logits, seg.query_idx, seg.num_classes,
                                       seg.logit_scale, seg.prob_thd, seg.area_thd)
        assert torch.equal(labels[0], image['pred'].long())
        _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes, seg.logit_scale)
        assert torch.equal(plain[0], image['pred_no_thd'].long())
    if benchmark != 'voc20':
        return
    # predict (factored logits, banded post-processing) on a batch of both images.
    inputs = [(im['resized'].flip(0).double() - MEAN) / STD
              for im in case['images']]
    samples = [SegDataSample(metainfo=dict(ori_shape=tuple(im['ori_shape']),
                                           img_path=im['file'])) for im in case['images']]
    for out, image in zip(seg.predict(inputs, samples), case['images']):
        assert torch.equal(out.pred_sem_seg.data[0], image['pred'].long())
