"""ResCLIP: its release's golden outputs (float64, tiny CLIP; fixtures/make_resclip_fixture.py),
its pieces against computations written out here (path check, SFR map, patch labels), the
whole encoder and its RCS / SFR switches against the formula by hand, batched prediction
against single images, purification, and every benchmark config."""
import json
import math
from collections import Counter
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import sfp
from sfp.methods import resclip
from sfp.models import PAMR, postprocess_logits
from sfp.registry import ENCODERS

from .conftest import FIXTURES, REPO, SHARED, TINY_CKPT, assert_batch_equals_single, sample
from .test_methods import TOL, BaselineGolden

GOLDEN = BaselineGolden(FIXTURES / 'resclip_compact.npz')
CASES = [case['name'] for case in GOLDEN.meta['cases']]
# A small vocabulary for the tests that do not compare with the golden file: on the tiny
# CLIP, temp_thd 0.2 leaves a mix of thresholded 0s and several argmax queries.
NAMES = [['sky', 'wall', 'tree'], ['cat'], ['dog'], ['person', 'people'], ['car']]
MIXED_TEMP_THD = 0.2


def golden_case(name):
    return next(case for case in GOLDEN.meta['cases'] if case['name'] == name)


def voc21_config():
    return Config.fromfile(str(REPO / 'configs' / 'resclip' / 'resclip_vit-b16_voc21.py'))


@pytest.fixture(scope='module')
def case_segmentor():
    """Case name -> the segmentor of that golden case: the VOC21 config on the tiny CLIP
    in float64, with the case's window and temp_thd (the sliding case is not a release
    setting)."""
    built = {}

    def make(name):
        if name not in built:
            params = golden_case(name)['params']
            model = voc21_config().model
            model.update(clip_path=str(TINY_CKPT), device='cpu', precision='fp64',
                         return_probs=True, slide_crop=params['slide_crop'],
                         slide_stride=params['slide_stride'])
            model.encoder.update(temp_thd=params['temp_thd'])
            built[name] = MODELS.build(model)
        return built[name]

    return make


class Recorder:
    """What the encoder computes for the first crop of its first call: features, R, the
    first-pass labels and S (observed, not replaced)."""

    def __init__(self, encoder, monkeypatch):
        self.found = {}
        first_pass_labels = encoder.first_pass_labels
        rcs_attention = encoder.rcs_attention
        feedback_map = resclip.semantic_feedback_map

        def keep(key, value):
            self.found.setdefault(key, value[0])
            return value

        monkeypatch.setattr(encoder, 'first_pass_labels',
                            lambda *a: keep('labels', first_pass_labels(*a)))
        monkeypatch.setattr(encoder, 'rcs_attention', lambda *a: keep('rcs', rcs_attention(*a)))
        monkeypatch.setattr(resclip, 'semantic_feedback_map',
                            lambda *a, **k: keep('sfr', feedback_map(*a, **k)))

        def features(module, args, out):
            keep('features', out.features)

        self.handle = encoder.register_forward_hook(features)

    def close(self):
        self.handle.remove()


def check_first_crop(found, prefix, image):
    """The recorded first crop against the golden: features, R and S at the golden's
    attention rows, first-pass labels."""
    stride = max(1, image['crop0_tokens'] // 64)
    assert found['features'].shape[0] == image['crop0_tokens']
    assert (found['features'][::stride] - GOLDEN.tensor(f'{prefix}/crop0_features')
            ).abs().max() <= TOL
    assert torch.equal(found['labels'], GOLDEN.tensor(f'{prefix}/crop0_first_pass'))
    rows = GOLDEN.tensor(f'{prefix}/crop0_attn_rows')
    # R and S: attention probabilities, up to the summation order of the matrix products
    # (which the CPU's BLAS kernels choose: S is bit-exact on some machines, not on all).
    assert (found['rcs'][:, rows] - GOLDEN.tensor(f'{prefix}/crop0_rcs_attn')).abs().max() \
        <= 1e-15
    assert (found['sfr'][rows] - GOLDEN.tensor(f'{prefix}/crop0_sfr_attn')).abs().max() \
        <= 1e-15


@pytest.mark.parametrize('name', CASES)
def test_release_outputs_are_reproduced(case_segmentor, monkeypatch, name):
    """First image: the first crop as computed inside the segmentor's own inference,
    logits at the sample pixels, both label maps."""
    seg, case = case_segmentor(name), golden_case(name)
    assert (seg.query_features - GOLDEN.tensor(f'{name}/query_features')).abs().max() <= TOL
    image, prefix = case['images'][0], f'{name}/0'
    inputs, ori_shape = GOLDEN.image_input(image['resized']), tuple(image['ori_shape'])
    recorder = Recorder(seg.encoder, monkeypatch)
    try:
        logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
    finally:
        recorder.close()
    check_first_crop(recorder.found, prefix, image)
    got = sample(logits, GOLDEN.tensor(f'{prefix}/sample_yx'))
    assert (got - GOLDEN.tensor(f'{prefix}/logits')).abs().max() <= TOL
    samples = [SegDataSample(metainfo=dict(ori_shape=ori_shape))]
    out = seg.postprocess_result([logits], samples)[0]
    assert torch.equal(out.pred_sem_seg.data[0], GOLDEN.tensor(f'{prefix}/pred').long())
    _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes, seg.logit_scale)
    assert torch.equal(plain[0], GOLDEN.tensor(f'{prefix}/pred_no_thd').long())


@pytest.mark.parametrize('name', CASES)
def test_second_image_through_the_public_path(case_segmentor, monkeypatch, name):
    """Second image, the acceptance checks' path: the whole image through ``seg.predict``
    (banded post-processing; without a threshold the label map is the argmax of its
    class probabilities), or the first window through ``seg.encoder``."""
    seg, case = case_segmentor(name), golden_case(name)
    image, prefix = case['images'][1], f'{name}/1'
    inputs = GOLDEN.image_input(image['resized'])
    recorder = Recorder(seg.encoder, monkeypatch)
    try:
        if seg.slide_crop:
            seg.encoder(inputs[None, :, :seg.slide_crop, :seg.slide_crop])
        else:
            samples = [SegDataSample(metainfo=dict(ori_shape=image['ori_shape']))]
            out = seg.predict(inputs[None], samples)[0]
            assert torch.equal(out.pred_sem_seg.data[0],
                               GOLDEN.tensor(f'{prefix}/pred').long())
            assert torch.equal(out.seg_logits.data.argmax(0),
                               GOLDEN.tensor(f'{prefix}/pred_no_thd').long())
    finally:
        recorder.close()
    check_first_crop(recorder.found, prefix, image)


@pytest.mark.skipif(not (SHARED / 'golden' / 'baselines' / 'resclip.pt').is_file(),
                    reason='needs ../shared/golden/baselines/resclip.pt')
def test_compact_fixture_is_a_faithful_copy():
    full = torch.load(SHARED / 'golden' / 'baselines' / 'resclip.pt', weights_only=False)
    assert full['release'] == GOLDEN.meta['release'] == \
        'yvhangyang/ResCLIP@0e085f7f52f06098b383599e9653cd28cc665a8c'
    assert [c['name'] for c in full['cases']] == CASES
    for case, meta in zip(full['cases'], GOLDEN.meta['cases']):
        name = case['name']
        assert json.dumps(case['params']) == json.dumps(meta['params'])
        assert torch.equal(GOLDEN.tensor(f'{name}/query_features'), case['query_features'])
        for i, (im, small) in enumerate(zip(case['images'], meta['images'])):
            assert torch.equal(GOLDEN.tensor(small['resized']), im['resized'])
            k = GOLDEN.tensor(f'{name}/{i}/sample_yx').shape[0]
            assert torch.equal(GOLDEN.tensor(f'{name}/{i}/sample_yx'), im['sample_yx'][:k])
            assert torch.equal(GOLDEN.tensor(f'{name}/{i}/logits'), im['logits_at_samples'][:k])
            stride = max(1, len(im['crop0_features']) // 64)
            assert torch.equal(GOLDEN.tensor(f'{name}/{i}/crop0_features'),
                               im['crop0_features'][::stride])
            for key in ('pred', 'pred_no_thd', 'crop0_first_pass', 'crop0_attn_rows',
                        'crop0_rcs_attn', 'crop0_sfr_attn'):
                assert torch.equal(GOLDEN.tensor(f'{name}/{i}/{key}'), im[key]), key


# -- the pieces, against computations written out here ------------------------------------
def path_by_hand(grid, p, q):
    """The release's path samples from patch p to q (row, col), in exact fractions:
    p + (q - p) * k / M for k = 0..s, rounded half to even (Python's round)."""
    longest = max(grid) - 1
    s = max(abs(q[0] - p[0]), abs(q[1] - p[1]))
    return [tuple(round(Fraction(a) + Fraction((b - a) * k, longest)) for a, b in zip(p, q))
            for k in range(s + 1)]


def validity_by_hand(labels, grid):
    rows, cols = grid
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    return torch.tensor([[all(labels[r][c] == labels[p[0]][p[1]]
                              for r, c in path_by_hand(grid, p, q)) for q in cells]
                         for p in cells])


def test_path_samples_on_a_small_grid():
    """3 x 5 grid, M = 4: the samples stop short of the far end (global denominator) and
    the half points round to even."""
    grid = (3, 5)

    def samples(p, q):
        s = max(abs(q[0] - p[0]), abs(q[1] - p[1]))
        tables = [resclip.path_samples(grid, k) for k in range(s + 1)]
        return [(int(rows[p[0], q[0]]), int(cols[p[1], q[1]])) for rows, cols in tables]

    # rows 0, .5, 1, 1.5 -> 0, 0, 1, 2; cols 0, .75, 1.5, 2.25 -> 0, 1, 2, 2
    assert samples((0, 0), (2, 3)) == [(0, 0), (0, 1), (1, 2), (2, 2)]
    # rows 1, 1.25, 1.5, 1.75 -> 1, 1, 2, 2; cols 1, 1.75, 2.5, 3.25 -> 1, 2, 2, 3
    assert samples((1, 1), (2, 4)) == [(1, 1), (1, 2), (2, 2), (2, 3)]
    # rows 2, 1.5, 1, .5, 0 -> 2, 2, 1, 0, 0
    assert samples((2, 4), (0, 0)) == [(2, 4), (2, 3), (1, 2), (0, 1), (0, 0)]
    assert samples((1, 2), (1, 2)) == [(1, 2)]
    labels = [[0, 0, 1, 1, 1],
              [0, 2, 2, 1, 1],
              [0, 2, 2, 2, 1]]
    valid = resclip.path_validity(torch.tensor([labels]))[0]
    assert not valid[0 * 5 + 0, 2 * 5 + 3]  # passes (1, 2), label 2
    assert valid[1 * 5 + 1, 2 * 5 + 4]  # ends at (2, 3): label 2 all along, though q is 1
    assert not valid[2 * 5 + 4, 0]  # leaves label 1 at once
    assert torch.equal(valid, validity_by_hand(labels, grid))


@pytest.mark.parametrize('grid', [(4, 4), (2, 7), (5, 3), (1, 6)])
def test_path_validity_against_exact_fractions(grid):
    """Random labels on grids with even and odd M (half points occur when M is even)."""
    gen = torch.Generator().manual_seed(sum(grid))
    labels = torch.randint(0, 3, (2, *grid), generator=gen)
    valid = resclip.path_validity(labels)
    for i in range(2):
        assert torch.equal(valid[i], validity_by_hand(labels[i].tolist(), grid))
    with pytest.raises(ValueError, match='step must be in 0..'):
        resclip.path_samples(grid, max(grid))


def test_semantic_feedback_map_by_hand():
    """2 x 3 grid (T = 6, M = 2): same-label matrix, exp(-s/M) decay off the path, a 7-tap
    Gaussian (min(6, 31) made odd) along each row with zero padding, rows normalised."""
    labels = [[0, 0, 1],
              [1, 0, 1]]
    grid, tokens, std = (2, 3), 6, 5.0
    cells = [(r, c) for r in range(2) for c in range(3)]
    valid = validity_by_hand(labels, grid)
    taps = [math.exp(-i * i / (2 * std * std)) for i in range(-3, 4)]
    taps = [t / sum(taps) for t in taps]
    for delete_same_entity in (True, False):
        expected = torch.zeros(tokens + 1, tokens + 1, dtype=torch.float64)
        for i, p in enumerate(cells):
            row = []
            for j, q in enumerate(cells):
                same = float(labels[p[0]][p[1]] == labels[q[0]][q[1]])
                if delete_same_entity and not valid[i, j]:
                    same *= math.exp(-max(abs(p[0] - q[0]), abs(p[1] - q[1])) / 2)
                row.append(same)
            blurred = [sum(taps[t + 3] * row[j + t] for t in range(-3, 4)
                           if 0 <= j + t < tokens) for j in range(tokens)]
            for j, value in enumerate(blurred):
                expected[1 + i, 1 + j] = value / (sum(blurred) + 1e-8)
        got = resclip.semantic_feedback_map(torch.tensor([labels]), std, delete_same_entity)
        assert got.shape == (1, 7, 7)
        assert (got[0] - expected).abs().max() <= 1e-15
    assert not valid.all()  # the decay took part


def test_patch_mode_and_query_labels():
    labels = torch.tensor([[[3, 1, 2, 2, 0],
                            [1, 3, 2, 0, 0],
                            [4, 4, 4, 4, 4]]])  # 2 x 2 blocks; the last row and column unused
    assert torch.equal(resclip.patch_mode(labels, 2, 5), torch.tensor([[[1, 2]]]))  # 1 ties 3
    logits = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.0, 0.05], [0.0, 0.0, 0.1]]).view(1, 3, 1, 3)
    # Scale 40: winners query 1, 0 and 2 with probabilities e^4 / (e^4 + 2) = 0.965,
    # 0.965 and e^4 / (e^4 + e^2 + 1) = 0.867.
    assert torch.equal(resclip.query_labels(logits, 40, 0.0), torch.tensor([[[1, 0, 2]]]))
    assert torch.equal(resclip.query_labels(logits, 40, 0.9), torch.tensor([[[1, 0, 0]]]))
    assert torch.equal(resclip.query_labels(logits, 40, 0.97), torch.tensor([[[0, 0, 0]]]))


# -- the encoder by hand, and its switches -----------------------------------------------
@pytest.fixture(scope='module')
def small():
    """A segmentor on the small vocabulary (its visual tower and query features) and a
    224 x 224 crop of a golden image."""
    seg = sfp.SFPSegmentor(str(TINY_CKPT), NAMES, device='cpu', precision='fp64',
                           templates=['a photo of a {}.'], encoder=dict(type='resclip'))
    crop = GOLDEN.image_input('resized/0')[None, :, :224, :224]
    return seg, crop


def encoder_by_hand(visual, crop, queries, use_rcs, use_sfr, temp_thd=MIXED_TEMP_THD):
    """ResCLIP's features of one crop written out: plain blocks 1..11 (R = mean of the
    attention of blocks 6-9), then the last block's attention from its keys, NACLIP's
    Gaussian bias, the RCS mix, and for SFR the first-pass labels (cosine, bilinear to the
    crop, PAMR, softmax(40), temp_thd, most frequent label per patch) and their map."""
    tokens, attention = visual.embed(crop), []
    for block in visual.blocks[:-1]:
        tokens, weights = block.forward_with_weights(tokens)
        attention.append(weights)
    rcs = sum(attention[5:9]) / 4 if use_rcs else None
    block = visual.blocks[-1]
    hidden = block.ln_1(tokens)[0]
    width, heads = hidden.shape[-1], block.attn.num_heads
    d = width // heads
    _, k, v = (hidden @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias).split(width, -1)
    k, v = (t.view(-1, heads, d).transpose(0, 1) for t in (k, v))  # (heads, T, d)
    rows, cols = torch.meshgrid(torch.arange(14.), torch.arange(14.), indexing='ij')
    rows, cols = rows.flatten().double(), cols.flatten().double()
    bias = torch.zeros(197, 197, dtype=torch.float64)
    bias[1:, 1:] = torch.exp(-((rows[:, None] - rows) ** 2 + (cols[:, None] - cols) ** 2) / 50)

    def features(sfr):
        logits = k @ k.transpose(-2, -1) / d ** 0.5
        if sfr is not None:
            logits = 2.2 * (0.3 * logits + 0.7 * sfr / sfr.max())
        weights = torch.softmax(logits + bias, dim=-1)
        if rcs is not None:
            weights = 2.0 * (0.7 * weights + 0.3 * rcs[0])
        out = block.attn.out_proj((weights @ v).transpose(0, 1).reshape(-1, width))
        return visual.ln_post(out[1:]) @ visual.proj

    first = features(None)
    if not use_sfr:
        return first, None
    cosine = (F.normalize(first, dim=-1) @ queries.t()).t().reshape(1, -1, 14, 14)
    cosine = F.interpolate(cosine, size=(224, 224), mode='bilinear', align_corners=False)
    probs = torch.softmax(40 * PAMR(10, (8, 16))(crop, cosine)[0], dim=0)
    pixels = torch.where(probs.max(0).values < temp_thd, 0, probs.argmax(0))
    labels = torch.zeros(14, 14, dtype=torch.long)
    for r in range(14):
        for c in range(14):
            counts = Counter(pixels[16 * r:16 * r + 16, 16 * c:16 * c + 16].flatten().tolist())
            labels[r, c] = min(label for label, n in counts.items()
                               if n == max(counts.values()))
    return features(resclip.semantic_feedback_map(labels[None])[0]), labels


def build(seg, **settings):
    return ENCODERS.build(dict(dict(type='resclip', visual=seg.encoder.visual,
                                    query_features=seg.query_features,
                                    temp_thd=MIXED_TEMP_THD), **settings))


@pytest.mark.parametrize('use_rcs', [True, False])
@pytest.mark.parametrize('use_sfr', [True, False])
def test_encoder_and_its_switches_by_hand(small, use_rcs, use_sfr):
    seg, crop = small
    encoder = build(seg, use_rcs=use_rcs, use_sfr=use_sfr)
    assert encoder.attention_blocks == ((6, 7, 8, 9) if use_rcs else ())
    expected, labels = encoder_by_hand(encoder.visual, crop, seg.query_features, use_rcs,
                                       use_sfr)
    if labels is not None:
        assert len(labels.unique()) >= 3 and (labels == 0).any()  # a real mix
    assert (encoder(crop).features[0] - expected).abs().max() <= 1e-12


def test_both_switches_off_is_naclip(small):
    seg, crop = small
    naclip = ENCODERS.build(dict(type='naclip', visual=seg.encoder.visual))
    plain = build(seg, use_rcs=False, use_sfr=False)
    assert (plain(crop).features - naclip(crop).features).abs().max() <= 1e-12
    assert (build(seg)(crop).features - naclip(crop).features).abs().max() > 1e-3


def test_last_block_attention_is_what_the_second_pass_applies(small):
    seg, crop = small
    encoder = build(seg)
    walk = encoder.walk(crop)
    weights, grid = encoder.attention_map(walk)  # (1, heads, 197, 197)
    block = encoder.last_block
    _, _, v = block.attn.project_qkv(block.ln_1(walk.tokens))
    rebuilt = encoder.visual.project(block.attn.merge_heads(weights @ v)[:, 1:])
    assert (rebuilt - encoder(crop).features).abs().max() <= 1e-12
    assert torch.allclose(weights.sum(-1), torch.full((1, 2, 197), 2.0, dtype=torch.float64))


# -- the segmentor: batching, purification, configs -----------------------------------------
def small_segmentor(config='voc21', **settings):
    model = Config.fromfile(
        str(REPO / 'configs' / 'resclip' / f'resclip_vit-b16_{config}.py')).model
    model.update(clip_path=str(TINY_CKPT), name_path=NAMES, device='cpu', precision='fp64',
                 templates=['a photo of a {}.'], return_probs=True, **settings)
    model.encoder.update(temp_thd=MIXED_TEMP_THD)
    return MODELS.build(model)


@pytest.mark.parametrize('slide_crop', [224, 0])
def test_batched_prediction_equals_single_images(slide_crop):
    """Images of three sizes; sliding windows (224 x 224 and 208 x 224 windows encoded
    together across images) or each image whole (two of one size in one batch)."""
    seg = small_segmentor(slide_crop=slide_crop)
    a, b = GOLDEN.image_input('resized/0'), GOLDEN.image_input('resized/1')
    if slide_crop:
        images = [a[:, :224, :280], b[:, 8:232, 40:264], b[:, 100:308, 50:330]]
    else:
        images = [a[:, :160, :208], b[:, :160, :208], b[:, 40:216, 90:234]]
    shapes = [(250, 310), (224, 224), (200, 260)]
    assert_batch_equals_single(seg, images, shapes)


def test_purify_runs_and_changes_the_features(small):
    seg, crop = small
    purified = small_segmentor(slide_crop=224, purify=True, pm='LOF')
    assert purified.encoder.detector is not None and type(purified.encoder).purify_by_default \
        is False
    out = purified.encoder(crop)
    assert out.outliers is not None and len(out.outliers.positions(0)) > 0
    assert (out.features - build(seg)(crop).features).abs().max() > 1e-6
    result = purified.predict(crop[:, :, :112, :160])[0]
    assert result.pred_sem_seg.data.shape == (1, 112, 160)
    assert torch.isfinite(result.seg_logits.data).all()


# The release's settings (BASELINES.md section 9): short side, crop (0 = whole image),
# prob_thd, temp_thd, attn_rcs_weights, attn_sfr_weights.
RELEASED = {
    'voc21': (336, 0, 0.1, 0.5, (2.0, 0.3), (2.2, 0.7)),
    'context60': (336, 224, 0.1, 0.3, (2.0, 0.3), (1.8, 0.7)),
    'coco_object': (336, 224, 0.1, 0.11, (2.0, 0.4), (1.8, 0.7)),
    'voc20': (336, 0, 0.0, 0.1, (2.0, 0.6), (2.1, 0.6)),
    'context59': (336, 224, 0.0, 0.25, (2.0, 0.4), (1.8, 0.7)),
    'coco_stuff164k': (336, 224, 0.0, 0.11, (2.0, 0.4), (1.8, 0.7)),
    'cityscapes': (560, 224, 0.0, 0.1, (2.0, 0.2), (2.1, 0.6)),
    'ade20k': (336, 224, 0.0, 0.25, (2.0, 0.3), (2.1, 0.7)),
}


@pytest.mark.parametrize('benchmark', list(RELEASED))
def test_every_config_is_the_release_and_runs(benchmark):
    cfg = Config.fromfile(str(REPO / 'configs' / 'resclip' / f'resclip_vit-b16_{benchmark}.py'))
    short = [t.scale[1] for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    cfg.model.update(clip_path=str(TINY_CKPT), device='cpu', templates=['{}'])
    seg = MODELS.build(cfg.model)
    encoder = seg.encoder
    assert (short[0], seg.slide_crop, seg.prob_thd, encoder.temp_thd, encoder.attn_rcs_weights,
            encoder.attn_sfr_weights) == RELEASED[benchmark]
    assert (seg.logit_scale, seg.area_thd, seg.pamr, seg.slide_stride) == (40, None, None, 112)
    assert encoder.use_rcs and encoder.use_sfr and encoder.delete_same_entity
    assert encoder.rcs_blocks == (6, 7, 8, 9) and encoder.gaussian_std == 5
    assert encoder.first_pass_logit_scale == 40 and encoder.first_pass_pamr.num_iter == 10
    assert encoder.first_pass_pamr.dilations == (8, 16) and seg.resize_via_input
    assert encoder.query_features.shape[0] == seg.num_queries
    image = GOLDEN.image_input('resized/1')[:, :80, :120].float()
    labels = seg.predict(image[None])[0].pred_sem_seg.data
    assert labels.shape == (1, 80, 120) and 0 <= int(labels.min()) < seg.num_classes


def test_bad_settings_give_clear_errors(small):
    seg, _ = small
    for settings, message in [(dict(attn_rcs_weights=(2.0,)), 'attn_rcs_weights must be two'),
                              (dict(temp_thd=1.5), 'temp_thd must be a probability'),
                              (dict(rcs_blocks=(6, 12)), r'rcs_blocks\[1\] = 12: must be'),
                              (dict(rcs_blocks=()), 'rcs_blocks must name at least one'),
                              (dict(gaussian_std=0), 'gaussian_std must be positive')]:
        with pytest.raises(ValueError, match=message):
            build(seg, **settings)
