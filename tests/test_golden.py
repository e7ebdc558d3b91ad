"""The release's golden outputs (float64, tiny CLIP of ViT-B/16 shape) reproduced through
the public API: the encoder, ``SFPSegmentor.inference`` and ``predict``."""
import json

import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample

from .conftest import DETECTORS, SHARED, sample

TOL = 1e-9


def predict(seg, inputs, ori_shape, prob_thd, area_thd):
    seg.prob_thd, seg.area_thd = prob_thd, area_thd
    try:
        out = seg.predict(inputs[None], [SegDataSample(metainfo=dict(ori_shape=ori_shape))])
    finally:
        seg.prob_thd, seg.area_thd = 0.15, 0.1
    return out[0]


@pytest.mark.parametrize('pm', DETECTORS)
def test_crop0_features_and_outliers(golden, make_segmentor, pm):
    seg = make_segmentor(pm=pm)
    for i in range(golden.num_images):
        crop = golden.image_input(i)[None, :, :224, :224].double()
        out = seg.encoder(crop)
        expected = golden.tensor(f'images/{i}/{pm}/crop0_features')
        assert (out.features[0] - expected).abs().max() <= TOL
        assert out.outliers.positions(0) == [tuple(p) for p in golden.meta['images'][i]
                                              ['outliers'][pm]]


@pytest.mark.parametrize('pm', DETECTORS)
def test_sliding_window_logits_and_predictions(golden, make_segmentor, pm):
    seg = make_segmentor(pm=pm)
    for i, meta in enumerate(golden.meta['images']):
        inputs, ori_shape = golden.image_input(i).double(), tuple(meta['ori_shape'])
        logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
        expected = golden.tensor(f'images/{i}/{pm}/logits')
        assert (sample(logits, golden.tensor(f'images/{i}/sample_yx')) - expected).abs().max() \
            <= TOL
        out = predict(seg, inputs, ori_shape, 0.15, 0.1)
        assert torch.equal(out.pred_sem_seg.data[0], golden.tensor(f'images/{i}/{pm}/pred').long())
        assert out.seg_logits.data.shape == (21, *ori_shape)
        plain = predict(seg, inputs, ori_shape, 0.0, None)
        assert torch.equal(plain.pred_sem_seg.data[0],
                           golden.tensor(f'images/{i}/{pm}/pred_no_thd').long())


@pytest.mark.parametrize('pm', DETECTORS)
def test_extras_whole_image_and_small_crop(golden, make_segmentor, pm):
    seg = make_segmentor(pm=pm)
    for i, meta in enumerate(golden.meta['extras']):
        inputs, ori_shape = golden.tensor(f'extras/{i}/input').double(), tuple(meta['ori_shape'])
        seg.slide_crop = meta['slide_crop']
        try:
            logits = seg.inference(inputs[None], [dict(ori_shape=ori_shape)])[0]
            plain = predict(seg, inputs, ori_shape, 0.0, None)
        finally:
            seg.slide_crop = 224
        expected = golden.tensor(f'extras/{i}/{pm}/logits')
        assert (sample(logits, golden.tensor(f'extras/{i}/sample_yx')) - expected).abs().max() \
            <= TOL, meta['name']
        assert torch.equal(plain.pred_sem_seg.data[0],
                           golden.tensor(f'extras/{i}/{pm}/pred_no_thd').long()), meta['name']


@pytest.mark.skipif(not (SHARED / 'golden').is_dir(), reason='needs ../shared/golden')
def test_compact_fixture_is_a_faithful_copy(golden):
    full = torch.load(SHARED / 'golden' / 'golden_voc21.pt', weights_only=False)
    assert torch.equal(golden.query_features, full['query_features'])
    assert json.dumps(golden.params) == json.dumps(full['params'])
    for i, im in enumerate(full['images']):
        assert torch.equal(golden.image_input(i)[None], im['input'])
        k = golden.tensor(f'images/{i}/sample_yx').shape[0]
        assert torch.equal(golden.tensor(f'images/{i}/sample_yx'), im['sample_yx'][:k])
        for pm, ref in im['per_detector'].items():
            assert np.array_equal(golden.arrays[f'images/{i}/{pm}/pred'], ref['pred'].numpy())
            assert torch.equal(golden.tensor(f'images/{i}/{pm}/logits'),
                               ref['logits_at_samples'][:k])
    for i, ex in enumerate(full['extras']):
        assert torch.equal(golden.tensor(f'extras/{i}/input')[None], ex['input'])
