"""The six baselines against their releases' golden outputs (float64, tiny CLIP), each
built from its own VOC21 config; batched prediction against single images for every
method."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from sfp.models import postprocess_logits

from .conftest import FIXTURES, REPO, SHARED, TINY_CKPT, assert_batch_equals_single, sample

TOL = 1e-9
MEAN = torch.tensor([122.771, 116.746, 104.094], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323], dtype=torch.float64).view(3, 1, 1)
# The settings a golden case records, named as the segmentor's arguments.
SETTINGS = ('logit_scale', 'prob_thd', 'area_thd', 'slide_crop', 'slide_stride', 'pamr_steps')


class BaselineGolden:
    """The compact copy of the baselines' golden outputs (fixtures/make_baselines_fixture.py)."""

    def __init__(self, path):
        data = np.load(path)
        self.arrays = {k: data[k] for k in data.files}
        self.meta = json.loads(self.arrays.pop('meta').tobytes())

    def tensor(self, key):
        return torch.from_numpy(self.arrays[key])

    def cases(self):
        return [(method, i) for method, entry in self.meta.items()
                for i in range(len(entry['cases']))]

    def image_input(self, resized_key):
        """The model input: the release's resized BGR image, to RGB, normalised in float64."""
        return (self.tensor(resized_key).flip(0).double() - MEAN) / STD


BASELINES = BaselineGolden(FIXTURES / 'baselines_compact.npz')
CASES = BASELINES.cases()


def case_id(case):
    method, i = case
    return f'{method}-{BASELINES.meta[method]["cases"][i]["name"]}'


def config_model(method, benchmark='voc21'):
    """The method's benchmark config, model part and test Resize short side."""
    cfg = Config.fromfile(str(REPO / 'configs' / method / f'{method}_vit-b16_{benchmark}.py'))
    short = [step.scale[1] for step in cfg.test_dataloader.dataset.pipeline
             if step.type == 'Resize']
    return cfg.model, short[0]


@pytest.fixture(scope='module')
def case_segmentors():
    """(method, case index) -> the segmentor of that golden case, memoised: the method's
    VOC21 config on the tiny CLIP in float64, with the case's settings where the case
    is not the config's own (NACLIP's sliding-window case)."""
    built = {}

    def make(method, index):
        if (method, index) not in built:
            model, short_side = config_model(method)
            params = BASELINES.meta[method]['cases'][index]['params']
            # The ClearCLIP goldens record 'no PAMR' as None.
            wanted = {k: (params[k] or 0) if k == 'pamr_steps' else params[k] for k in SETTINGS}
            own = {k: model.get(k) for k in SETTINGS}
            if (method, params['slide_crop']) != ('naclip', 224):
                assert own == wanted and short_side == params['short_side']
            model.update(wanted, clip_path=str(TINY_CKPT), device='cpu', precision='fp64',
                         return_probs=True)
            built[(method, index)] = MODELS.build(model)
        return built[(method, index)]

    return make


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_release_outputs_are_reproduced(case_segmentors, case):
    method, index = case
    seg = case_segmentors(method, index)
    meta = BASELINES.meta[method]['cases'][index]
    prefix = f'{method}/{meta["name"]}'
    assert (seg.query_features - BASELINES.tensor(f'{prefix}/query_features')).abs().max() \
        <= TOL
    crop = seg.slide_crop or None
    for i, image in enumerate(meta['images']):
        inputs, ori_shape = BASELINES.image_input(image['resized']), tuple(image['ori_shape'])
        first_crop = inputs[None, :, :crop, :crop]
        out = seg.encoder(first_crop)
        assert out.features.shape[1] == image['crop0_tokens']
        stride = max(1, image['crop0_tokens'] // 64)
        expected = BASELINES.tensor(f'{prefix}/{i}/crop0_features')
        assert (out.features[0, ::stride] - expected).abs().max() <= TOL
        if 'crop0_outliers' in image:
            found = seg.encoder.anomalies(seg.encoder.walk(first_crop).tokens, out.grid)
            assert found.positions(0) == [tuple(p) for p in image['crop0_outliers']]
        logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
        got = sample(logits, BASELINES.tensor(f'{prefix}/{i}/sample_yx'))
        assert (got - BASELINES.tensor(f'{prefix}/{i}/logits')).abs().max() <= TOL
        samples = [SegDataSample(metainfo=dict(ori_shape=ori_shape))]
        # With PAMR, predict is inference then postprocess_result: reuse the logits.
        out = (seg.postprocess_result([logits], samples) if seg.pamr is not None
               else seg.predict(inputs[None], samples))[0]
        assert torch.equal(out.pred_sem_seg.data[0], BASELINES.tensor(f'{prefix}/{i}/pred').long())
        assert out.seg_logits.data.shape == (seg.num_classes, *ori_shape)
        _, plain = postprocess_logits(logits, seg.query_idx, seg.num_classes, seg.logit_scale)
        assert torch.equal(plain[0], BASELINES.tensor(f'{prefix}/{i}/pred_no_thd').long())


@pytest.mark.parametrize('method', ['clip', 'maskclip', 'clearclip', 'sclip', 'naclip', 'scclip'])
def test_baselines_do_not_purify_unless_asked(case_segmentors, method):
    seg = case_segmentors(method, 0)
    assert seg.encoder.detector is None and type(seg.encoder).purify_by_default is False


@pytest.mark.skipif(not (SHARED / 'golden' / 'baselines').is_dir(),
                    reason='needs ../shared/golden/baselines')
def test_compact_fixture_is_a_faithful_copy():
    for method, entry in BASELINES.meta.items():
        full = torch.load(SHARED / 'golden' / 'baselines' / f'{method}.pt', weights_only=False)
        assert [c['name'] for c in full['cases']] == [c['name'] for c in entry['cases']]
        for case, meta in zip(full['cases'], entry['cases']):
            prefix = f'{method}/{case["name"]}'
            assert json.dumps(case['params']) == json.dumps(meta['params'])
            assert torch.equal(BASELINES.tensor(f'{prefix}/query_features'),
                               case['query_features'])
            for i, (im, small) in enumerate(zip(case['images'], meta['images'])):
                assert torch.equal(BASELINES.tensor(small['resized']), im['resized'])
                k = BASELINES.tensor(f'{prefix}/{i}/sample_yx').shape[0]
                assert torch.equal(BASELINES.tensor(f'{prefix}/{i}/sample_yx'),
                                   im['sample_yx'][:k])
                assert torch.equal(BASELINES.tensor(f'{prefix}/{i}/logits'),
                                   im['logits_at_samples'][:k])
                stride = max(1, len(im['crop0_features']) // 64)
                assert torch.equal(BASELINES.tensor(f'{prefix}/{i}/crop0_features'),
                                   im['crop0_features'][::stride])
                for key in ('pred', 'pred_no_thd'):
                    assert torch.equal(BASELINES.tensor(f'{prefix}/{i}/{key}'), im[key])
                assert small.get('crop0_outliers') == (
                    [[int(r), int(c)] for r, c in im['crop0_outliers']]
                    if 'crop0_outliers' in im else None)


def batch_images():
    """Three real images: two of one size and one of another."""
    a = BASELINES.image_input('resized/336/0')
    b = BASELINES.image_input('resized/336/1')
    return [a[:, :240, :300], b[:, :240, :300], b[:, 30:250, 10:260]]


@pytest.mark.parametrize('case', [(m, 0) for m in BASELINES.meta] + [('naclip', 1)],
                         ids=case_id)
def test_batched_prediction_equals_single_images(case_segmentors, case):
    """Every method, sliding windows of 224 / 112 (several per image, crops of all images
    encoded together) or the whole image (NACLIP's case with PAMR)."""
    seg = case_segmentors(*case)
    images = batch_images()
    shapes = [(250, 310), (240, 300), (200, 260)]
    crop, stride = seg.slide_crop, seg.slide_stride
    seg.slide_crop, seg.slide_stride = (224, 112) if crop else (0, stride)
    try:
        assert_batch_equals_single(seg, images, shapes)
    finally:
        seg.slide_crop, seg.slide_stride = crop, stride


def clearclip_slide_by_hand(seg, image, crop, stride, ori_shape):
    """The ClearCLIP release's sliding windows written out: each window zero-padded to
    whole patches (floor half before), its logits upsampled to the padded size, the
    padding cut off, windows summed and averaged, then resized to the original size."""
    height, width = image.shape[-2:]
    total = image.new_zeros((seg.num_queries, height, width))
    count = image.new_zeros((1, height, width))
    for i in range(max(height - crop + stride - 1, 0) // stride + 1):
        for j in range(max(width - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(i * stride + crop, height), min(j * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            h, w = y2 - y1, x2 - x1
            pad_h, pad_w = (16 - h % 16) % 16, (16 - w % 16) % 16
            window = F.pad(image[:, y1:y2, x1:x2],
                           (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            features = F.normalize(seg.encoder(window[None]).features[0], dim=-1)
            grid = (features @ seg.query_features.t()).t().reshape(-1, (h + pad_h) // 16,
                                                                  (w + pad_w) // 16)
            up = F.interpolate(grid[None], size=window.shape[-2:], mode='bilinear',
                               align_corners=False)[0]
            total[:, y1:y2, x1:x2] += up[:, pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w]
            count[:, y1:y2, x1:x2] += 1
    return F.interpolate((total / count)[None], size=ori_shape, mode='bilinear',
                         align_corners=False)[0]


@pytest.mark.parametrize('size,crop,stride', [((200, 300), 224, 112), ((250, 300), 200, 100)])
def test_clearclip_pads_windows_to_whole_patches(case_segmentors, size, crop, stride):
    """Windows whose sides are not multiples of 16 (an image side under the crop, or such
    a crop), which the golden images never make."""
    seg = case_segmentors('clearclip', 0)
    image = BASELINES.image_input('resized/448/1')[:, :size[0], :size[1]]
    ori_shape = (size[0] + 37, size[1] - 21)
    expected = clearclip_slide_by_hand(seg, image, crop, stride, ori_shape)
    old = seg.slide_crop, seg.slide_stride
    seg.slide_crop, seg.slide_stride = crop, stride
    try:
        logits = seg.inference(image[None], [dict(ori_shape=ori_shape)])[0]
        seg.pad_crops = False
        unpadded = seg.inference(image[None], [dict(ori_shape=ori_shape)])[0]
    finally:
        seg.slide_crop, seg.slide_stride = old
        seg.pad_crops = True
    assert (logits - expected).abs().max() <= 1e-12
    assert (unpadded - expected).abs().max() > 1e-4
