"""CASS against its release's golden outputs (float64, tiny CLIP and tiny DINO, both SVD
cases), through the public API; batching, purification and every benchmark config."""
import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics.pairwise import cosine_distances

from sfp.methods import CASSEncoder
from sfp.methods.cass import randomised_svd, text_clusters
from sfp.models import postprocess_logits
from sfp.vfm import DINOVisionTransformer

from .conftest import (
    FIXTURES,
    REPO,
    SHARED,
    TINY_CKPT,
    TINY_DINO,
    assert_batch_equals_single,
    sample,
)

TOL = 1e-9
MEAN = torch.tensor([122.771, 116.746, 104.094], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323], dtype=torch.float64).view(3, 1, 1)
BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')
# The release's settings per benchmark (../shared/docs/VFM_METHODS.md, section 2): short
# side, crop (0: whole image), prob_thd, gamma, beta, h_threshold, S rescaled, global vector.
RELEASED = {
    'voc21': (336, 0, 0.1, 0.10, 0.03, 0.10, True, 'crop'),
    'context60': (336, 224, 0.1, 0.25, 0.04, 0.09, True, 'image'),
    'coco_object': (336, 224, 0.1, 0.25, 0.01, 0.10, True, 'image'),
    'voc20': (336, 224, 0.0, 0.40, 0.02, 0.10, False, 'image'),
    'context59': (336, 224, 0.0, 0.25, 0.04, 0.09, True, 'image'),
    'coco_stuff164k': (336, 224, 0.0, 0.20, 0.02, 0.02, True, 'image'),
    'cityscapes': (560, 224, 0.0, 0.10, 0.03, 0.14, False, 'crop'),
    'ade20k': (336, 224, 0.0, 0.30, 0.05, 0.06, True, 'image'),
}
# Where the text features are not compared with the golden's: one template, no cache.
ONE_TEMPLATE = dict(templates=['a photo of a {}.'], text_cache=False)


class CASSGolden:
    """The compact copy of CASS's golden file (fixtures/make_cass_fixture.py), or of another
    method's made the same way (``fixture``); its resized images are those of
    ``baselines_compact.npz``."""

    def __init__(self, fixture: str = 'cass_compact.npz'):
        data = np.load(FIXTURES / fixture)
        self.arrays = {k: data[k] for k in data.files}
        self.meta = json.loads(self.arrays.pop('meta').tobytes())
        self.images = np.load(FIXTURES / 'baselines_compact.npz')

    def tensor(self, key):
        return torch.from_numpy(self.arrays[key])

    def image_input(self, image):
        """The model input: the release's resized BGR image, to RGB, normalised in float64."""
        resized = self.images[image['resized']]
        assert hashlib.sha256(resized.tobytes()).hexdigest() == image['resized_sha256']
        return (torch.from_numpy(resized).flip(0).double() - MEAN) / STD


GOLDEN = CASSGolden()
CASES = GOLDEN.meta['cases']


def config(benchmark):
    return Config.fromfile(str(REPO / 'configs' / 'cass' / f'cass_vit-b16_{benchmark}.py'))


def short_side(cfg):
    return [step.scale[1] for step in cfg.test_dataloader.dataset.pipeline
            if step.type == 'Resize'][0]


def build(benchmark='voc21', precision='fp64', **changes):
    """A benchmark config's segmentor on the tiny CLIP and DINO, ``changes`` applied."""
    model = config(benchmark).model
    encoder = dict(model.encoder, **changes.pop('encoder', {}))
    model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), device='cpu',
                 precision=precision, return_probs=True, encoder=encoder, **changes)
    return MODELS.build(model)


@pytest.fixture(scope='module')
def case_segmentors():
    built = {}

    def make(case):
        if case['name'] not in built:
            svd = 'exact' if case['params']['svd'] == 'exact' else 'lowrank'
            built[case['name']] = build(encoder=dict(svd=svd))
        return built[case['name']]

    return make


@pytest.mark.parametrize('case', CASES, ids=lambda c: c['name'])
def test_release_outputs_are_reproduced(case_segmentors, case):
    seg = case_segmentors(case)
    params, encoder = case['params'], seg.encoder
    assert (seg.logit_scale, seg.prob_thd, seg.area_thd, seg.slide_crop, seg.pamr) == \
        (params['logit_scale'], params['prob_thd'], params['area_thd'], params['slide_crop'],
         None)
    assert (encoder.global_semantics_weight, encoder.mean_vector_weight,
            encoder.cluster_threshold, encoder.gaussian_std, encoder.rank, encoder.svd_niter,
            encoder.spectrum_size, encoder.dino_weight_scale, encoder.topk_patches) == \
        (params['global_semantics_weight'], params['mean_vector_weight'],
         params['h_threshold'], params['gaussian_std'], params['initial_q'],
         params['svd_niter'], params['k_eigen'], params['scale_factor'],
         params['topk_patches'])
    assert short_side(config('voc21')) == params['short_side']
    name = case['name']
    assert (seg.query_features - GOLDEN.tensor(f'{name}/query_features')).abs().max() <= TOL
    assert encoder.cluster_ids.tolist() == case['cluster_ids']
    for i, image in enumerate(case['images']):
        prefix = f'{name}/{i}'
        inputs, ori_shape = GOLDEN.image_input(image), tuple(image['ori_shape'])
        out, (trace,) = encoder.forward_with_trace(inputs[None])
        assert out.features.shape[1] == image['crop0_tokens']
        stride = max(1, image['crop0_tokens'] // 64)
        expected = GOLDEN.tensor(f'{prefix}/crop0_features')
        assert (out.features[0, ::stride] - expected).abs().max() <= TOL
        picture = trace.dino_image.contiguous().numpy().tobytes()
        assert hashlib.sha256(picture).hexdigest() == image['dino_image_sha256']
        for key in ('head_match', 'energy_rank', 'rank_used'):
            assert getattr(trace, key).tolist() == image[key], key
        for key in ('global_sim', 'adjusted_text', 'head_cost', 'head_weight'):
            assert (getattr(trace, key) - GOLDEN.tensor(f'{prefix}/{key}')).abs().max() <= TOL
        # Spectra and singular values reach ~2e3: compared relative to their size.
        for key in ('singular_values', 'dino_eigs', 'clip_eigs'):
            want = GOLDEN.tensor(f'{prefix}/{key}')
            assert (getattr(trace, key) - want).abs().max() <= TOL * want.abs().max(), key
        logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
        got = sample(logits, GOLDEN.tensor(f'{prefix}/sample_yx'))
        assert (got - GOLDEN.tensor(f'{prefix}/logits')).abs().max() <= TOL
        out = seg.predict(inputs[None], [SegDataSample(metainfo=dict(ori_shape=ori_shape))])[0]
        assert torch.equal(out.pred_sem_seg.data[0], GOLDEN.tensor(f'{prefix}/pred').long())
        _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes, seg.logit_scale)
        assert torch.equal(plain[0], GOLDEN.tensor(f'{prefix}/pred_no_thd').long())


def test_seeded_and_exact_svd_differ_where_the_golden_says():
    """The two cases' singular values agree on the leading values and differ on the tail
    (the randomised SVD's error), so the seeded parity above pins down the draws."""
    seeded, exact = (GOLDEN.tensor(f'{c["name"]}/0/singular_values') for c in CASES)
    assert (seeded[:, :5] - exact[:, :5]).abs().max() < 1e-3 * exact.max()
    assert (seeded[:, -1] - exact[:, -1]).abs().min() > 1e-2


def test_randomised_svd_is_torchs_svd_lowrank_with_its_own_generator():
    """Same draws and algorithm as ``torch.svd_lowrank`` on a seeded global generator
    (the golden's protocol), without touching the global generator."""
    a = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    matrix = a @ a.T
    torch.manual_seed(42)
    u, s, v = torch.svd_lowrank(matrix, q=10, niter=2)
    state = torch.get_rng_state()
    ours = randomised_svd(matrix, 10, 2, torch.Generator().manual_seed(42))
    assert torch.equal(torch.get_rng_state(), state)
    assert (ours[1] - s).abs().max() <= 1e-12 * s.max()
    assert ((ours[0] * ours[1]) @ ours[2].T - (u * s) @ v.T).abs().max() <= 1e-12 * s.max()


def test_text_clusters_are_ward_linkage_of_cosine_distances():
    """scikit-learn's cosine distances (the release's), scipy's Ward linkage, cut at the
    threshold; on the golden's query features and on vectors of known clusters."""
    features = GOLDEN.tensor(f'{CASES[0]["name"]}/query_features')
    distances = cosine_distances(features.numpy())
    for threshold in (0.02, 0.1, 0.5):
        tree = linkage(squareform(distances, checks=False), method='ward')
        want = fcluster(tree, t=threshold, criterion='distance') - 1
        assert text_clusters(features, threshold).tolist() == want.tolist()
    three = torch.tensor([[1.0, 0, 0], [0.99, 0.1, 0], [0, 1.0, 0], [0, 0.98, 0.1],
                          [0, 0, 1.0]])
    assert text_clusters(three, 0.3).tolist() == [0, 0, 1, 1, 2]
    assert text_clusters(three[:1], 0.3).tolist() == [0]


def test_head_layouts_must_match():
    state = torch.load(TINY_DINO, weights_only=True)
    clip_tower = build().encoder.visual
    with pytest.raises(ValueError, match='VFM has 4 heads of 32 channels, CLIP 2 of 64'):
        CASSEncoder(clip_tower, DINOVisionTransformer.from_state_dict(state, heads=4),
                    torch.eye(2, 64), torch.arange(2))
    with pytest.raises(ValueError, match="svd must be one of lowrank, exact, got 'full'"):
        build(encoder=dict(svd='full'))
    with pytest.raises(ValueError, match="global_vector must be one of image, crop"):
        build(encoder=dict(global_vector='whole'))


def batch_images():
    """Three real images: two of one size and one of another (crops of another size)."""
    a, b = (GOLDEN.image_input(im) for im in CASES[0]['images'])
    return [a[:, :240, :300], b[:, :240, :300], b[:, 30:250, 10:260]]


@pytest.fixture(scope='module')
def sliding():
    """Context60's setting (windows of 224 / 112, the whole image's global vector)."""
    return build('context60', **ONE_TEMPLATE)


def test_batched_prediction_equals_single_images(sliding):
    """Crops of all images encoded together, three at a time (so that one image's crops
    span two batches): the same as each image alone, because each image's SVD draws come
    from its own generator, in crop order."""
    images, shapes = batch_images(), [(250, 310), (240, 300), (200, 260)]
    sliding.crop_batch_size = 3
    try:
        assert_batch_equals_single(sliding, images, shapes)
    finally:
        sliding.crop_batch_size = None


def test_sliding_windows_follow_the_release(sliding):
    """The release's loop written out: one generator per image, seeded once, its draws
    consumed window by window (rows, then columns); every window mixes in the whole
    image's global vector; window logits upsampled, summed, averaged, resized."""
    image = batch_images()[0]
    encoder, (height, width) = sliding.encoder, image.shape[-2:]
    generator = torch.Generator().manual_seed(42)
    whole = encoder.global_embedding(encoder.walk(image[None]).tokens)[0]
    context = type(encoder.image_context(image))(generator, whole)
    total = image.new_zeros((sliding.num_queries, height, width))
    count = image.new_zeros((1, height, width))
    for y1 in (0, 16):
        for x1 in (0, 76):
            crop = image[None, :, y1:y1 + 224, x1:x1 + 224]
            logits = encoder(crop, [context]).logits
            total[:, y1:y1 + 224, x1:x1 + 224] += F.interpolate(
                logits, size=(224, 224), mode='bilinear', align_corners=False)[0]
            count[:, y1:y1 + 224, x1:x1 + 224] += 1
    want = F.interpolate((total / count)[None], size=(250, 310), mode='bilinear',
                         align_corners=False)[0]
    got = sliding.inference(image[None], [dict(ori_shape=(250, 310))])[0]
    assert (got - want).abs().max() <= 1e-12
    # Without the image's context a window is its own image: fresh draws, its own CLS.
    alone = encoder(image[None, :, :224, :224]).logits
    first = encoder(image[None, :, :224, :224],
                    [type(context)(torch.Generator().manual_seed(42), whole)]).logits
    assert (alone - first).abs().max() > 1e-6


def test_purification_runs_before_the_last_block():
    seg = build('context60', purify=True, **ONE_TEMPLATE)
    assert seg.encoder.detector is not None and CASSEncoder.purify_by_default is False
    image = batch_images()[2]
    walk = seg.encoder.walk(image[None, :, :224, :224])
    assert walk.outliers is not None and walk.outliers.mask().any()
    out = seg.predict(image[None])[0]
    assert out.pred_sem_seg.data.shape == (1, *image.shape[-2:])
    plain = build('context60', **ONE_TEMPLATE).encoder(image[None, :, :224, :224]).features
    assert (seg.encoder(image[None, :, :224, :224]).features - plain).abs().max() > 1e-6


def test_analysis_reads_the_attention_the_last_block_applies():
    """``sfp.analysis`` shows CASS's last-block attention beside the other methods': the
    weights the block applies (its output is out_proj of them times the values)."""
    from sfp.analysis import center_crop, compare_last_block_attention, method_segmentors
    from sfp.apis import prepare_image
    from sfp.datasets import read_image
    image = read_image(REPO / 'demo' / 'images' / '000000214753.jpg')
    settings = dict(clip_path=str(TINY_CKPT), device='cpu', precision='fp64',
                    vfm_path=str(TINY_DINO))
    comparison = compare_last_block_attention(['naclip', 'cass'], image, **settings)
    weights = comparison.methods['cass'].weights.double()
    assert weights.shape == (2, 196, 196) and not comparison.methods['cass'].has_cls
    assert (weights.sum(-1) - 1).abs().max() <= 1e-6
    assert comparison.query_maps(7, 7)['cass'].shape == (14, 14)
    seg = method_segmentors(['cass'], **settings)['cass']
    crop = center_crop(prepare_image(image), 224).flip(0).double()
    crop = ((crop - MEAN) / STD)[None]  # the analysed crop, CLIP-normalised
    encoder = seg.encoder
    walk = encoder.walk(crop)
    applied, grid = encoder.attention_map(walk)
    assert grid == (14, 14) and (applied[0] - weights).abs().max() <= 1e-6
    block = encoder.last_block
    values = block.attn.project_v(block.ln_1(walk.tokens))[:, :, 1:]
    features = encoder.visual.project(block.attn.merge_heads(applied @ values))
    assert (encoder(crop).features - features).abs().max() <= 1e-12


@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_config_has_the_released_setting_and_runs(benchmark):
    cfg = config(benchmark)
    side, crop, prob_thd, gamma, beta, threshold, rescale, vector = RELEASED[benchmark]
    assert short_side(cfg) == side
    model, encoder = cfg.model, cfg.model.encoder
    assert (model.slide_crop, model.prob_thd, model.logit_scale, model.pamr_steps) == \
        (crop, prob_thd, 40, 0)
    assert (encoder.global_semantics_weight, encoder.mean_vector_weight,
            encoder.cluster_threshold, encoder.rescale_singular_values,
            encoder.global_vector, encoder.svd, model.vfm_path) == \
        (gamma, beta, threshold, rescale, vector, 'lowrank', 'dino_vitb8')
    seg = build(benchmark, precision='fp32', **ONE_TEMPLATE)
    assert type(seg.encoder) is CASSEncoder
    image = batch_images()[2].float()
    out = seg.predict(image[None])[0]
    labels = out.pred_sem_seg.data
    assert labels.shape == (1, *image.shape[-2:])
    assert int(labels.min()) >= 0 and int(labels.max()) < seg.num_classes


@pytest.mark.skipif(not (SHARED / 'golden' / 'vfm' / 'cass.pt').is_file(),
                    reason='needs ../shared/golden/vfm/cass.pt')
def test_compact_fixture_is_a_faithful_copy():
    full = torch.load(SHARED / 'golden' / 'vfm' / 'cass.pt', weights_only=False)
    assert [c['name'] for c in full['cases']] == [c['name'] for c in CASES]
    for case, meta in zip(full['cases'], CASES):
        assert json.dumps(case['params']) == json.dumps(meta['params'])
        assert case['cluster_ids'].tolist() == meta['cluster_ids']
        assert torch.equal(GOLDEN.tensor(f'{meta["name"]}/query_features'),
                           case['query_features'])
        for i, (im, small) in enumerate(zip(case['images'], meta['images'])):
            prefix = f'{meta["name"]}/{i}'
            assert torch.equal(GOLDEN.image_input(small),
                               (im['resized'].flip(0).double() - MEAN) / STD)
            k = GOLDEN.tensor(f'{prefix}/sample_yx').shape[0]
            assert torch.equal(GOLDEN.tensor(f'{prefix}/logits'), im['logits_at_samples'][:k])
            for key in ('pred', 'pred_no_thd'):
                assert torch.equal(GOLDEN.tensor(f'{prefix}/{key}'), im[key])
            for key in ('singular_values', 'adjusted_text', 'head_cost'):
                assert torch.equal(GOLDEN.tensor(f'{prefix}/{key}'), im[f'crop0_{key}'])
            assert small['head_match'] == im['crop0_head_match'].tolist()
            assert small['dino_image_sha256'] == im['crop0_dino_image_sha256']
