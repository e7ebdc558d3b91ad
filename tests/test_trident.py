"""Trident against its release's golden outputs (float64; tiny CLIP, DINO ViT/16 and SAM; the
three post-processing cases) through the VOC21 config; SAM's guidance and mask prompt by
the release's formulas written out here; batching, purification and every benchmark
config on the tiny weights."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

import sfp
from sfp.methods import TridentEncoder, sam_guidance
from sfp.vfm import SAM, load_vfm

from .conftest import (
    REPO,
    SHARED,
    TINY_CKPT,
    TINY_DINO,
    TINY_SAM,
    assert_batch_equals_single,
)

GOLDEN_FILE = SHARED / 'golden' / 'vfm' / 'trident.pt'
TINY_DINO16 = SHARED / 'golden' / 'vfm' / 'tiny_dino_vit16.pth'
MEAN = torch.tensor([122.771, 116.746, 104.094], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323], dtype=torch.float64).view(3, 1, 1)
TOL = 1e-9
BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')
needs_golden = pytest.mark.skipif(not GOLDEN_FILE.is_file(),
                                  reason='needs ../shared/golden/vfm (the Trident golden)')


@pytest.fixture(scope='module', autouse=True)
def sam_views_once():
    """SAM's view of a picture is computed once per SAM and picture in this module (it does
    not depend on the config, the batch or the case): SAM's encoder runs at 1024 x 1024
    whatever the image, and is most of a prediction's time on the tiny weights."""
    original, seen = TridentEncoder.sam_view, {}

    def once(self, rgb):
        key = (id(self.sam), rgb.shape, hash(rgb.tobytes()), self.sam.image_encoder.pos_embed.dtype)
        if key not in seen:
            seen[key] = original(self, rgb)
        return seen[key]

    TridentEncoder.sam_view = once
    yield
    TridentEncoder.sam_view = original


def config(benchmark):
    return Config.fromfile(str(REPO / 'configs' / 'trident' / f'trident_vit-b16_{benchmark}.py'))


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN_FILE, weights_only=False)


@pytest.fixture(scope='module')
def tiny_sam():
    return SAM.from_state_dict(torch.load(TINY_SAM, weights_only=True))


@pytest.fixture(scope='module')
def trident(golden):
    """The VOC21 config in float64 on the golden's tiny weights.  Each image is encoded once
    for the three cases (they differ only after the encoder): ``encode_image`` is memoised
    per file, and the refinement follows the case's settings when it is called."""
    cfg = config('voc21')
    params = golden['cases'][0]['params']
    encoder = cfg.model.encoder
    assert (cfg.model.logit_scale, cfg.model.prob_thd, cfg.model.slide_crop,
            cfg.model.slide_stride) == (params['logit_scale'], params['prob_thd'],
                                        params['slide_crop'], params['slide_stride'])
    assert {k: encoder[k] for k in ('beta', 'gamma', 'cos_fac', 'refine_neg_cos',
                                    'coarse_thresh', 'minimal_area', 'sam_mask_coff',
                                    'sam_iou_thresh', 'sam_refinement')} == {
        k: params[k] for k in ('beta', 'gamma', 'cos_fac', 'refine_neg_cos', 'coarse_thresh',
                               'minimal_area', 'sam_mask_coff', 'sam_iou_thresh',
                               'sam_refinement')}
    assert cfg.model.vfm_path == params['vfm_hub'][1] and cfg.model.sam_path == 'sam_vit_b'
    sam = SAM.from_state_dict(torch.load(TINY_SAM, weights_only=True))  # its own: float64
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO16), sam_path=sam,
                     device='cpu', precision='fp64', return_probs=True)
    seg = MODELS.build(cfg.model)
    encode, done = seg.encoder.encode_image, {}

    def encode_once(image, meta=None):
        if meta['img_path'] not in done:
            done[meta['img_path']] = encode(image, meta)
        out, trace, refine = done[meta['img_path']]
        return out, trace, refine if seg.refine_on else None

    seg.encoder.encode_image = encode_once
    seg.refine_on = True
    return seg


def image_input(resized):
    return (resized.flip(0).double() - MEAN) / STD


def close(a, b, tol=TOL):
    a, b = (torch.as_tensor(v, dtype=torch.float64) for v in (a, b))
    return (a - b).abs().max().item() <= tol


@needs_golden
def test_release_outputs_are_reproduced(trident, golden):
    """Every case, both images, with prob_thd 0.2 and 0: the label maps through ``predict``;
    the encoder's extras and the logits at the sample pixels (the first case, which holds
    them); each refinement's regions, prompts, SAM's IoU and low-resolution logits, and the
    refined map where masks passed."""
    seg = trident
    first = golden['cases'][0]
    assert seg.query_idx.tolist() == list(first['query_idx'])
    assert close(seg.query_features, first['query_features'])
    assert sfp.clip.loader.file_sha256(TINY_SAM) == golden['sam_weights_sha256']
    refinement, traces = seg.encoder.refinement, []
    refine = refinement.refine

    def recorded(*args):
        labels, refined, trace = refine(*args)
        traces.append(trace)
        return labels, refined, trace

    refinement.refine = recorded
    for case in golden['cases']:
        params = case['params']
        seg.refine_on = params['sam_refinement']
        refinement.sam_iou_thresh = params['sam_iou_thresh']
        for i, im in enumerate(case['images']):
            shared = first['images'][i]
            x = image_input(shared['resized'])
            meta = dict(ori_shape=tuple(im['ori_shape']), img_path=str(SHARED / 'data' /
                                                                         im['file']))
            if case is first:
                check_encoder(*seg.encoder.encode_image(x, meta)[:2], shared)
                logits = seg.inference(x[None], [meta])[0]
                yx = im['sample_yx']
                assert close(logits[:, yx[:, 0], yx[:, 1]].t(), shared['logits_at_samples'])
            for thd, key, refine_key in ((0.2, 'pred', 'refine'),
                                         (0.0, 'pred_no_thd', 'refine_no_thd')):
                seg.prob_thd = thd
                traces.clear()
                pred = seg.predict(x[None], [SegDataSample(metainfo=meta)])[0]
                assert torch.equal(pred.pred_sem_seg.data[0], im[key].long()), (case['name'], key)
                expected = im.get(refine_key)
                assert len(traces) == (expected is not None)
                if expected is not None:
                    check_refinement(traces[0], expected)
                if expected is not None and expected['merged']:
                    yx = im['sample_yx']
                    assert close(pred.seg_logits.data[:, yx[:, 0], yx[:, 1]].t(),
                                 expected['refined_logits_at_samples'])
        seg.prob_thd = params['prob_thd']
    refinement.refine = refine


def check_encoder(out, trace, image):
    """The extras of the golden's first case: DINO, the proxy attention, the splice, SAM's
    view, the guidance and the features."""
    assert list(trace.clip_shape) == image['processed_shape']
    assert [list(b) for b in trace.boxes] == [list(b) for b in image['crop_boxes']]
    vfm = trace.vfm_features
    assert close(vfm[0][image['crop0_vfm_idx']], image['crop0_vfm_feats'], 1e-12)
    unit = F.normalize(vfm, dim=-1)
    assert close((unit @ unit.transpose(1, 2)).mean(), image['dino_sim_mean'], 1e-12)
    assert close(trace.window_outputs[0][image['crop0_vfm_idx']], image['crop0_custom_out'])
    assert list(trace.spliced.shape) == image['splice_shape']
    assert close(trace.spliced.flatten(1).t()[image['splice_idx']], image['splice_v'])
    view = trace.sam[0]
    assert (list(view.rounded_size), list(view.input_size), list(view.grid)) == (
        image['sam_tmp_shape'], image['sam_input_size'], image['sam_valid_hw'])
    assert close(view.values.transpose(0, 1)[image['sam_idx']], image['sam_v'])
    rows, cols = view.grid
    neck = view.embedding[0, :, :rows, :cols].flatten(1).t()
    assert close(neck[image['sam_idx']], image['sam_neck'])
    assert close(view.attention[:, image['sam_rows']], image['sam_attn_rows'])
    assert close(trace.thresholds[0], image['sam_thresh'])
    assert close(trace.guidance[0][image['sam_rows']], image['guidance_rows'])
    assert out.grid == view.grid
    assert close(out.features[0][image['features_idx']], image['features'])


def check_refinement(done, expected):
    assert list(done.down_shape) == expected['down_shape']
    assert done.n_unknown == expected['n_unknown_down']
    assert done.mask_input_nonzero == expected['mask_input_nonzero']
    assert (done.merged, done.failed_merge) == (expected['merged'], expected['failed_merge'])
    assert len(done.regions) == len(expected['regions'])
    points, boxes = torch.cat(done.sam_points), torch.cat(done.sam_boxes)
    for k, (region, want) in enumerate(zip(done.regions, expected['regions'])):
        assert (region.cls, int(region.mask.sum()), list(region.box), list(region.point)) == (
            want['cls'], want['n_pixels'], [int(v) for v in want['box']], want['point'])
        assert abs(region.score - want['score']) <= TOL
        assert abs(region.sam_iou - want['sam_iou']) <= TOL
        assert close(points[k], want['sam_point']) and close(boxes[k], want['sam_box'])
    low_res = torch.cat(done.low_res).flatten(1)[:, expected['lowres_idx']]
    assert close(low_res, expected['sam_lowres'])


def test_sam_guidance_by_the_release_formula():
    gen = torch.Generator().manual_seed(3)
    attention = torch.rand(2, 30, 30, generator=gen, dtype=torch.float64).softmax(-1)
    values = torch.randn(2, 30, 8, generator=gen, dtype=torch.float64)
    for cos_fac, refine_neg in ((1.2, True), (3.0, False), (0.0, True)):
        weights, threshold = sam_guidance(attention, values, cos_fac, refine_neg)
        unit = values / values.norm(dim=-1, keepdim=True)
        sim = unit @ unit.transpose(1, 2)
        t = cos_fac * sim.sum(dim=(0, 2)) / (2 * 30)
        if not refine_neg:
            t[t < 0] = 0.6
        t[t > 0.9] = 0.9
        kept = (attention * (sim > t[None, :, None])).mean(0)
        assert close(threshold, t, 1e-14)
        assert close(weights, kept / kept.sum(-1, keepdim=True), 1e-14)


def test_unbatched_mask_prompt_is_normalised_over_rows(tiny_sam):
    """Trident's mask prompt (1, 256, 256) goes through SAM's downscaling unbatched: the
    first LayerNorm2d takes its statistics over rows (dim 1 of (C, H, W)), as released."""
    downscale = copy.deepcopy(tiny_sam.prompt_encoder.mask_downscaling).double()
    mask = torch.rand(1, 256, 256, generator=torch.Generator().manual_seed(4),
                      dtype=torch.float64)
    conv = downscale[0](mask)  # (4, 128, 128)
    mean, var = conv.mean(1, keepdim=True), conv.var(1, unbiased=False, keepdim=True)
    norm = downscale[1]
    by_rows = (conv - mean) / (var + norm.eps).sqrt() * norm.weight[:, None, None] \
        + norm.bias[:, None, None]
    assert close(downscale[1](conv), by_rows, 1e-14)
    dense = downscale(mask)
    assert dense.shape == (16, 64, 64)
    assert not close(dense, downscale(mask[None])[0], 1e-6)  # batched: over channels


@pytest.fixture(scope='module')
def small_trident(tiny_sam):
    """The VOC21 config on the tiny CLIP, DINO ViT/8 (its grid twice CLIP's: the splice at
    ratio 2) and SAM, with a three-class vocabulary, in float32: an image's computation is
    the same alone or in a batch, so the results are identical, not only close."""
    model = config('voc21').model
    model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), sam_path=tiny_sam,
                 device='cpu', precision='fp32', return_probs=True,
                 name_path=[['sky'], ['tree'], ['person']], templates=['{}'],
                 text_cache=False, slide_crop=112, slide_stride=64)
    return MODELS.build(model)


def test_batched_prediction_equals_single_images(small_trident):
    gen = torch.Generator().manual_seed(5)
    images = [torch.randn(3, 150, 200, generator=gen), torch.randn(3, 128, 176, generator=gen)]
    assert_batch_equals_single(small_trident, images, [(150, 200), (128, 176)], tol=0)


def test_purification_acts_on_the_windows(small_trident, tiny_sam):
    purified = MODELS.build(dict(
        type='SFPSegmentor', clip_path=str(TINY_CKPT), vfm_path=small_trident.encoder.vfm,
        sam_path=tiny_sam, device='cpu', name_path=[['sky'], ['tree']],
        templates=['{}'], text_cache=False, slide_crop=112, slide_stride=64,
        encoder=dict(type='trident'), purify=True, pm='L2', precision='fp32'))
    crops = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(6))
    walk, _, outputs, grid = purified.encoder.window_outputs(crops)
    plain = small_trident.encoder.window_outputs(crops)
    assert grid == (14, 14) and walk.outliers is not None and walk.outliers.positions(0)
    assert not close(outputs, plain[2], 1e-6)


@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_config_builds_and_segments(benchmark, tiny_sam):
    cfg = config(benchmark)
    dino = load_vfm(TINY_DINO)
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=dino, sam_path=tiny_sam,
                     device='cpu', templates=['{}'], text_cache=False, return_probs=True,
                     purify=benchmark == 'voc20', pm='L2')
    seg = MODELS.build(cfg.model)
    assert (seg.encoder.detector is not None) == (benchmark == 'voc20')
    assert isinstance(seg.encoder, TridentEncoder) and seg.encoder.refinement is not None
    assert seg.num_classes == len(DATASETS.get(cfg.test_dataloader.dataset.type)
                                  .METAINFO['classes'])
    assert seg.encoder.split_halves == (benchmark == 'cityscapes')
    image = torch.randn(3, 120, 250, generator=torch.Generator().manual_seed(2))
    out = seg.predict(image[None])[0]
    assert out.pred_sem_seg.data.shape == (1, 120, 250)
    assert int(out.pred_sem_seg.data.max()) < seg.num_classes
    assert out.seg_logits.data.shape == (seg.num_classes, 120, 250)


@pytest.mark.parametrize('kwargs, message', [
    (dict(encoder=dict(type='trident'), vfm_path=str(TINY_DINO)),
     "TridentEncoder reads SAM: set sam_path"),
    (dict(sam_path=str(TINY_SAM)), r'sam_path is set, but SFPEncoder reads no SAM '
                                   r'\(methods that do: trident\)'),
    (dict(encoder=dict(type='trident'), vfm_path=str(TINY_DINO), sam_path=str(TINY_SAM),
          slide_crop=100), 'slide_crop and slide_stride must be positive multiples of 16'),
])
def test_sam_argument_mistakes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sfp.SFPSegmentor(str(TINY_CKPT), [['sky'], ['tree']], device='cpu', templates=['{}'],
                         text_cache=False, **kwargs)


def test_test_tool_sets_sam_path():
    from sfp.evaluation import build_test_config
    path = REPO / 'configs' / 'trident' / 'trident_vit-b16_ade20k.py'
    cfg = build_test_config(path, sam_path=str(TINY_SAM), vfm_path=str(TINY_DINO))
    assert (cfg.model.sam_path, cfg.model.vfm_path) == (str(TINY_SAM), str(TINY_DINO))
    assert build_test_config(path).model.sam_path == 'sam_vit_b'
    assert np.isclose(cfg.model.encoder.coarse_thresh, 0.05)


def test_analysis_shows_the_sam_guided_attention(tiny_sam):
    """compare_last_block_attention: Trident's map is its SAM-guided aggregation weights on
    SAM's grid (sam_guidance on SAM's view of the crop, rebuilt from the model input); the
    map of a CLIP patch averages the rows of the SAM cells it covers."""
    import math

    from sfp.analysis import compare_last_block_attention, method_segmentors
    from sfp.datasets import read_image
    from sfp.methods.trident import input_to_rgb

    from .test_analysis import IMAGE
    segmentors = method_segmentors(['trident'], clip_path=str(TINY_CKPT), device='cpu',
                                   precision='fp32', vfm_path=str(TINY_DINO), sam_path=tiny_sam)
    comparison = compare_last_block_attention(segmentors, read_image(IMAGE))
    attention = comparison.methods['trident']
    assert comparison.grid == (14, 14) and attention.grid == (64, 64)
    assert not attention.has_cls
    crop = torch.from_numpy(comparison.crop.copy()).permute(2, 0, 1).double()
    rgb = input_to_rgb((crop - MEAN) / STD)
    assert np.array_equal(rgb, comparison.crop)  # the model input turned back into pixels
    view = segmentors['trident'].encoder.sam_view(rgb)
    expected, _ = sam_guidance(view.attention, view.values, 1.2, True)
    assert close(attention.weights[0], expected, 1e-5)
    rows = range(8 * 64 // 14, math.ceil(9 * 64 / 14))
    cols = range(3 * 64 // 14, math.ceil(4 * 64 / 14))
    cells = [r * 64 + c for r in rows for c in cols]
    assert close(comparison.query_maps(8, 3)['trident'], expected[cells].mean(0).view(64, 64),
                 1e-5)
