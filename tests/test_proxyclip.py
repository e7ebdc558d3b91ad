"""ProxyCLIP against its release's golden outputs (float64, tiny CLIP and tiny DINO) through
the public API; the DINO tower alone and its positional-embedding interpolation against
independent computations; non-square crops (which the release gets wrong), batching and
purification against the release's formulas written out here."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

import sfp
from sfp.methods import ProxyCLIPEncoder, proxy_attention
from sfp.models import build_detector, mitigate_outliers, postprocess_logits
from sfp.vfm import load_vfm

from .conftest import (
    FIXTURES,
    REPO,
    SHARED,
    TINY_CKPT,
    TINY_DINO,
    assert_batch_equals_single,
    sample,
)
from .test_methods import SETTINGS, BaselineGolden, batch_images, config_model

GOLDEN = BaselineGolden(FIXTURES / 'vfm_compact.npz')
CASE = GOLDEN.meta['proxyclip']['cases'][0]
PREFIX = f'proxyclip/{CASE["name"]}'
TOL = 1e-9
# The release's constants, written out here (proxyclip_segmentor.py, myutils.UnNormalize).
CLIP_MEAN_01 = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD_01 = (0.26862954, 0.26130258, 0.27577711)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')


def channels(values):
    return torch.tensor(values, dtype=torch.float64).view(3, 1, 1)


def dino_input(crop):
    """The release's VFM input: UnNormalize with CLIP's 0-1 constants, then Normalize."""
    rgb = crop * channels(CLIP_STD_01) + channels(CLIP_MEAN_01)
    return (rgb - channels(IMAGENET[0])) / channels(IMAGENET[1])


@pytest.fixture(scope='module')
def dino():
    return load_vfm(TINY_DINO, dtype='fp64')


@pytest.fixture(scope='module')
def proxyclip():
    """The VOC21 config on the tiny CLIP and DINO in float64, with the golden case's settings."""
    model, short_side = config_model('proxyclip')
    params = CASE['params']
    assert {k: model.get(k) for k in SETTINGS} == {
        k: (params[k] or 0) if k == 'pamr_steps' else params[k] for k in SETTINGS}
    assert short_side == params['short_side'] and model.pad_crops == params['pad_multiple']
    assert (model.encoder.beta, model.encoder.gamma) == (params['beta'], params['gamma'])
    assert model.vfm_path == params['vfm_hub'][1] == 'dino_vitb8'
    model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), device='cpu',
                 precision='fp64', return_probs=True)
    return MODELS.build(model)


def test_release_outputs_are_reproduced(proxyclip):
    seg = proxyclip
    assert seg.query_idx.tolist() == CASE['query_idx']
    assert (seg.query_features - GOLDEN.tensor(f'{PREFIX}/query_features')).abs().max() <= TOL
    for i, image in enumerate(CASE['images']):
        inputs, ori_shape = GOLDEN.image_input(image['resized']), tuple(image['ori_shape'])
        y1, y2, x1, x2 = image['crop0_box']
        first_crop = inputs[None, :, y1:y2, x1:x2]
        out = seg.encoder(first_crop)
        assert out.grid == tuple(image['crop0_vfm_shape'][1:]) == (42, 42)
        assert out.features.shape[1] == image['crop0_tokens'] == 42 * 42
        stride = max(1, image['crop0_tokens'] // 64)
        expected = GOLDEN.tensor(f'{PREFIX}/{i}/crop0_features')
        assert (out.features[0, ::stride] - expected).abs().max() <= TOL
        vfm, grid = seg.encoder.vfm_features(first_crop)
        index = GOLDEN.tensor(f'{PREFIX}/{i}/crop0_vfm_idx')
        assert (vfm[0, index] - GOLDEN.tensor(f'{PREFIX}/{i}/crop0_vfm_feats')).abs().max() \
            <= 1e-12
        logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
        got = sample(logits, GOLDEN.tensor(f'{PREFIX}/{i}/sample_yx'))
        assert (got - GOLDEN.tensor(f'{PREFIX}/{i}/logits')).abs().max() <= TOL
        samples = [SegDataSample(metainfo=dict(ori_shape=ori_shape))]
        out = seg.predict(inputs[None], samples)[0]
        assert torch.equal(out.pred_sem_seg.data[0], GOLDEN.tensor(f'{PREFIX}/{i}/pred').long())
        _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes, seg.logit_scale)
        assert torch.equal(plain[0], GOLDEN.tensor(f'{PREFIX}/{i}/pred_no_thd').long())


def test_dino_tower_alone(dino):
    """The DINO tower on the release's VFM input of crop 0, at the golden's 256 tokens;
    the 336 crop needs DINO's 28 -> 42 positional-embedding interpolation."""
    for i, image in enumerate(CASE['images']):
        crop = GOLDEN.image_input(image['resized'])[None, :, :336, :336]
        tokens = dino.patch_tokens(dino_input(crop))
        index = GOLDEN.tensor(f'{PREFIX}/{i}/crop0_vfm_idx')
        assert (tokens[0, index] - GOLDEN.tensor(f'{PREFIX}/{i}/crop0_vfm_feats')).abs().max() \
            <= 1e-12


def bicubic_by_hand(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(n, n, C) -> (rows, cols, C): PyTorch's bicubic with DINO's scale factors
    ((rows + 0.1) / n, (cols + 0.1) / n): source = (dst + 0.5) / scale - 0.5, cubic
    convolution with A = -0.75, taps clamped at the border; one axis at a time."""
    def near(x):
        return ((1.25 * x) - 2.25) * x * x + 1  # |x| <= 1, A = -0.75

    def far(x):
        return ((-0.75 * x + 3.75) * x - 6) * x + 3  # 1 < |x| < 2

    def axis(values, out, scale):
        n = values.shape[0]
        result = []
        for dst in range(out):
            src = (dst + 0.5) / scale - 0.5
            base = math.floor(src)
            t = src - base
            weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
            result.append(sum(w * values[min(max(base - 1 + k, 0), n - 1)]
                              for k, w in enumerate(weights)))
        return np.stack(result)

    n = grid.shape[0]
    resized = axis(grid, rows, (rows + 0.1) / n)
    return axis(resized.transpose(1, 0, 2), cols, (cols + 0.1) / n).transpose(1, 0, 2)


@pytest.mark.parametrize('size', [(200, 296), (112, 448), (224, 224)])
def test_positional_embedding_interpolation(dino, size):
    """Grids 25 x 37, 14 x 56 (784 patches like the trained 28 x 28, but not square: DINO
    interpolates) and 28 x 28 (the trained grid: used as it is)."""
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    rows, cols = size[0] // 8, size[1] // 8
    patches = F.conv2d(images, dino.patch_embed.proj.weight, dino.patch_embed.proj.bias,
                       stride=8).flatten(2).transpose(1, 2)
    tokens = dino.embed(images)
    assert tokens.shape == (1, 1 + rows * cols, 128)
    pos = dino.pos_embed[0]
    assert torch.equal(tokens[0, 0], dino.cls_token[0, 0] + pos[0])
    raw = pos[1:].reshape(28, 28, -1).numpy()
    expected = raw if (rows, cols) == (28, 28) else bicubic_by_hand(raw, rows, cols)
    got = (tokens[0, 1:] - patches[0]).reshape(rows, cols, -1).numpy()
    assert np.abs(got - expected).max() <= 1e-12


def proxyclip_by_hand(seg, dino, crop, tokens=None):
    """The release's custom_attn for one crop, with the grids of a non-square crop the
    right way round (CLIP's v as gh x gw, DINO's as H/8 x W/8): per head, v resized to
    DINO's grid, the thresholded softmax of DINO's cosine similarities applied; heads
    concatenated, out_proj, ln_post, proj.  ``tokens``: block L-1's output to use (else
    CLIP's own)."""
    visual, beta, gamma = seg.encoder.visual, seg.encoder.beta, seg.encoder.gamma
    height, width = crop.shape[-2:]
    feats = dino(dino_input(crop))[0, 1:].t()  # (C, IJ)
    q_k = F.normalize(feats, dim=0)
    similarity = q_k.t() @ q_k
    similarity = (similarity - similarity.mean() * beta) * gamma
    similarity[similarity < 0] = float('-inf')
    weights = torch.softmax(similarity, dim=-1)
    if tokens is None:
        tokens = visual.embed(crop)
        for block in visual.blocks[:-1]:
            tokens = block(tokens)
    block = visual.blocks[-1]
    width_c = tokens.shape[-1]
    v = F.linear(block.ln_1(tokens)[0], block.attn.in_proj_weight[2 * width_c:],
                 block.attn.in_proj_bias[2 * width_c:])[1:]  # (gh*gw, C)
    heads, d = block.attn.num_heads, width_c // block.attn.num_heads
    gh, gw = height // 16, width // 16
    outputs = []
    for h in range(heads):
        vh = v[:, h * d:(h + 1) * d].reshape(gh, gw, d).permute(2, 0, 1)[None]
        vh = F.interpolate(vh, size=(height // 8, width // 8), mode='bilinear',
                           align_corners=False)[0].flatten(1).t()
        outputs.append(weights @ vh)
    out = block.attn.out_proj(torch.cat(outputs, dim=-1))
    return visual.ln_post(out) @ visual.proj


@pytest.mark.parametrize('size', [(224, 336), (280, 168)])
def test_non_square_crops_by_the_release_formula(proxyclip, dino, size):
    """The release's formula (square crops: the golden test) with its two reshapes fixed
    (its v grid is (W/16, H/16) and its DINO grid (H/8, H/8)), so that rows stay rows."""
    image = GOLDEN.image_input(CASE['images'][1]['resized'])
    crop = image[None, :, :size[0], :size[1]]
    out = proxyclip.encoder(crop)
    assert out.grid == (size[0] // 8, size[1] // 8)
    assert (out.features[0] - proxyclip_by_hand(proxyclip, dino, crop)).abs().max() <= 1e-12


def test_purification_acts_before_the_last_block(dino):
    """purify=True: block L-1's output with its outliers (L2 detector) replaced by their
    neighbours' mean, then the release's formula; not the unpurified features."""
    seg = MODELS.build(dict(type='SFPSegmentor', clip_path=str(TINY_CKPT),
                            vfm_path=str(TINY_DINO), device='cpu', precision='fp64',
                            name_path=[['sky'], ['tree']], templates=['{}'],
                            encoder=dict(type='proxyclip'), purify=True, pm='L2'))
    crop = GOLDEN.image_input(CASE['images'][0]['resized'])[None, :, :168, :224]
    visual = seg.encoder.visual
    tokens = visual.embed(crop)
    for block in visual.blocks[:-1]:
        tokens = block(tokens)
    outliers = build_detector('L2')(tokens, None, (10, 14))
    assert outliers.positions(0)
    purified = torch.cat([tokens[:, :1], mitigate_outliers(tokens[:, 1:], outliers.mask(),
                                                           (10, 14))], dim=1)
    out = seg.encoder(crop)
    assert out.outliers.positions(0) == outliers.positions(0)
    assert (out.features[0] - proxyclip_by_hand(seg, dino, crop, purified)).abs().max() <= 1e-12
    assert (out.features[0] - proxyclip_by_hand(seg, dino, crop)).abs().max() > 1e-6


def test_batched_prediction_equals_single_images(proxyclip):
    """Three images of two sizes in one batch: each a single window smaller than the crop,
    padded to multiples of 56 (168 x 224 and 168 x 168)."""
    images = [img[:, :150, :200] for img in batch_images()[:2]] + [batch_images()[2][:, :130,
                                                                                     :150]]
    shapes = [(160, 210), (150, 200), (140, 170)]
    assert_batch_equals_single(proxyclip, images, shapes)


def test_proxy_attention_by_hand():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, 30, 8, generator=gen, dtype=torch.float64)
    weights = proxy_attention(features, 1.2, 3.0)
    for b in range(2):  # the mean is each crop's own, whatever the batch
        f = features[b] / features[b].norm(dim=-1, keepdim=True)
        s = f @ f.t()
        scores = 3.0 * (s - 1.2 * s.sum() / s.numel())
        expected = torch.where(scores < 0, 0, scores.exp())
        expected = expected / expected.sum(-1, keepdim=True)
        assert (weights[b] - expected).abs().max() <= 1e-12
    # A uniform crop: every similarity is 1, below 1.2 x the mean; the release divides 0 by
    # 0 there.  Each patch attends to itself instead.
    uniform = proxy_attention(torch.ones(1, 5, 8, dtype=torch.float64), 1.2, 3.0)
    assert torch.equal(uniform[0], torch.eye(5, dtype=torch.float64))


def config_segments(name, vfm, size=(120, 250)):
    """The ProxyCLIP config ``name`` on the tiny CLIP and ``vfm`` (a file or a tower) in
    float32 segments a random image into its dataset's classes; returns the segmentor."""
    cfg = Config.fromfile(str(REPO / 'configs' / 'proxyclip' / f'{name}.py'))
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=vfm, device='cpu',
                     templates=['{}'], text_cache=False)
    seg = MODELS.build(cfg.model)
    assert isinstance(seg.encoder, ProxyCLIPEncoder)
    assert seg.num_classes == len(DATASETS.get(cfg.test_dataloader.dataset.type)
                                  .METAINFO['classes'])
    image = torch.randn(3, *size, generator=torch.Generator().manual_seed(2))
    out = seg.predict(image[None])[0]
    assert out.pred_sem_seg.data.shape == (1, *size)
    assert int(out.pred_sem_seg.data.max()) < seg.num_classes
    return seg


@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_config_builds_and_segments(benchmark):
    config_segments(f'proxyclip_vit-b16_{benchmark}', str(TINY_DINO))


def test_the_vfm_is_loaded_once_and_shared(proxyclip):
    tower = proxyclip.encoder.vfm
    other = sfp.SFPSegmentor(str(TINY_CKPT), [['sky'], ['tree']], device='cpu',
                             precision='fp64', templates=['{}'], encoder=dict(type='proxyclip'),
                             vfm_path=tower)
    assert other.encoder.vfm is tower and tower.cls_token.dtype == torch.float64


@pytest.mark.parametrize('kwargs, message', [
    (dict(encoder=dict(type='proxyclip')), "ProxyCLIPEncoder reads a vision foundation model: "
                                           "set vfm_path"),
    (dict(vfm_path=str(TINY_DINO)), 'vfm_path is set, but SFPEncoder reads no vision '
                                    r'foundation model \(methods that do: cass, corrclip, '
                                    r'proxyclip, trident; or patch-level propagation\)'),
    (dict(encoder=dict(type='proxyclip'), vfm_path='dino_vitb9'),
     "unknown VFM 'dino_vitb9' \\(did you mean 'dino_vitb8'\\?\\)"),
])
def test_vfm_argument_mistakes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sfp.SFPSegmentor(str(TINY_CKPT), [['sky'], ['tree']], device='cpu', templates=['{}'],
                         **kwargs)


@pytest.mark.skipif(not (SHARED / 'golden' / 'vfm').is_dir(), reason='needs ../shared/golden/vfm')
def test_compact_fixture_is_a_faithful_copy():
    full = torch.load(SHARED / 'golden' / 'vfm' / 'proxyclip.pt', weights_only=False)
    assert full['vfm_weights_sha256'] == sfp.clip.loader.file_sha256(TINY_DINO)
    (case,) = full['cases']
    assert json.dumps(case['params']) == json.dumps(CASE['params'])
    assert torch.equal(GOLDEN.tensor(f'{PREFIX}/query_features'), case['query_features'])
    for i, (im, small) in enumerate(zip(case['images'], CASE['images'])):
        assert torch.equal(GOLDEN.tensor(small['resized']), im['resized'])
        assert small['crop0_box'] == list(im['crop0_box'])
        for key, full_key in (('sample_yx', 'sample_yx'), ('logits', 'logits_at_samples'),
                              ('crop0_vfm_idx', 'crop0_vfm_idx'),
                              ('crop0_vfm_feats', 'crop0_vfm_feats')):
            part = GOLDEN.tensor(f'{PREFIX}/{i}/{key}')
            assert torch.equal(part, im[full_key][:len(part)])
        assert torch.equal(GOLDEN.tensor(f'{PREFIX}/{i}/crop0_features'),
                           im['crop0_features'][::len(im['crop0_features']) // 64])
        for key in ('pred', 'pred_no_thd'):
            assert torch.equal(GOLDEN.tensor(f'{PREFIX}/{i}/{key}'), im[key])


def test_analysis_shows_the_proxy_attention(dino):
    """compare_last_block_attention: ProxyCLIP's map for a CLIP patch is the proxy
    attention (by the release's formula here) of the four DINO cells it covers, on DINO's
    28 x 28 grid; analyze_image reports the same."""
    from sfp.analysis import analyze_image, compare_last_block_attention
    from sfp.datasets import read_image

    from .test_analysis import IMAGE, clip_input
    image = read_image(IMAGE)
    comparison = compare_last_block_attention(['clip', 'proxyclip'], image,
                                              clip_path=str(TINY_CKPT), device='cpu',
                                              precision='fp64', vfm_path=str(TINY_DINO))
    proxy = comparison.methods['proxyclip']
    assert comparison.grid == (14, 14) and proxy.grid == (28, 28) and not proxy.has_cls
    feats = F.normalize(dino(dino_input(clip_input(image)))[0, 1:], dim=-1)
    similarity = feats @ feats.t()
    scores = (similarity - similarity.mean() * 1.2) * 3.0
    expected = torch.softmax(scores.masked_fill(scores < 0, float('-inf')), dim=-1)
    assert (proxy.weights[0] - expected.float()).abs().max() <= 1e-6
    maps = comparison.query_maps(7, 3)
    assert maps['clip'].shape == (14, 14) and maps['proxyclip'].shape == (28, 28)
    cells = [r * 28 + c for r in (14, 15) for c in (6, 7)]
    assert torch.allclose(maps['proxyclip'], expected[cells].mean(0).view(28, 28).float(),
                          atol=1e-6)
    seg = MODELS.build(dict(
        type='SFPSegmentor', clip_path=str(TINY_CKPT), vfm_path=dino, device='cpu',
        precision='fp64', name_path=[['sky'], ['tree']], templates=['{}'],
        encoder=dict(type='proxyclip')))
    analysis = analyze_image(seg, image, detectors=['L2'])
    assert analysis.grid == (14, 14) and analysis.last_block.grid == (28, 28)
    assert torch.equal(analysis.last_block.weights, proxy.weights)
    assert analysis.labels.shape == image.shape[:2] and seg.encoder.vfm is dino


def test_test_tool_sets_the_vfm():
    from sfp.evaluation import build_test_config
    config = REPO / 'configs' / 'proxyclip' / 'proxyclip_vit-b16_ade20k.py'
    cfg = build_test_config(config, vfm_path=str(TINY_DINO), clip_path=str(TINY_CKPT))
    assert (cfg.model.vfm_path, cfg.model.clip_path) == (str(TINY_DINO), str(TINY_CKPT))
    assert build_test_config(config).model.vfm_path == 'dino_vitb8'
