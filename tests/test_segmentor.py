"""SFPSegmentor: registration, the release's defects fixed, batching, precisions, errors."""
import pytest
import torch
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import sfp

from .conftest import CLASSNAMES, TINY_CKPT


def samples_for(shapes):
    return [SegDataSample(metainfo=dict(ori_shape=s)) for s in shapes]


@pytest.fixture(scope='module')
def images(golden):
    """Three real images of different sizes (two golden inputs and a crop of one)."""
    return [golden.image_input(0), golden.image_input(2), golden.image_input(1)[:, 40:240, :180]]


def test_registered_under_both_names():
    assert MODELS.get('SFPSegmentor') is sfp.SFPSegmentor
    assert MODELS.get('SFPForSegmentation') is sfp.SFPSegmentor


def test_built_from_a_release_style_config():
    cfg = dict(type='SFPForSegmentation', clip_path=str(TINY_CKPT),
               name_path=str(CLASSNAMES / 'cls_voc20.txt'), device='cpu', cross_s=3,
               cross_e=10, pm='SOM', purify=True, res_cls=0.3, logit_scale=40)
    seg = MODELS.build(cfg)
    assert seg.num_classes == 20 and seg.encoder.integrator.blocks == (4, 10)
    assert seg.encoder.detector.cls_weight == pytest.approx(1.5)
    assert seg.dtype == torch.float32  # fp32 by default on the CPU


def test_batch_of_different_sizes_equals_single_calls(make_segmentor, images):
    seg = make_segmentor(pm='SOM')
    shapes = [(426, 640), (364, 500), (300, 270)]
    batched = seg.predict(images, samples_for(shapes))
    for img, shape, out in zip(images, shapes, batched):
        single = seg.predict(img[None].double(), samples_for([shape]))[0]
        assert out.pred_sem_seg.data.shape == (1, *shape)
        assert torch.equal(out.pred_sem_seg.data, single.pred_sem_seg.data)
        assert (out.seg_logits.data - single.seg_logits.data).abs().max() <= 1e-12


def test_crop_batch_size_does_not_change_results(make_segmentor, images):
    shapes = [(336, 505), (336, 462), (200, 180)]
    small = make_segmentor(pm='LOF', crop_batch_size=1).predict(images, samples_for(shapes))
    large = make_segmentor(pm='LOF', crop_batch_size=64).predict(images, samples_for(shapes))
    for a, b in zip(small, large):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert (a.seg_logits.data - b.seg_logits.data).abs().max() <= 1e-12


def test_purify_false_runs_without_detection_and_differs(make_segmentor, images):
    plain = make_segmentor(purify=False)
    assert plain.encoder.detector is None
    purified = make_segmentor(pm='SOM')
    shape = [(336, 505)]
    a = plain.inference(images[0][None].double(), [dict(ori_shape=shape[0])])[0]
    b = purified.inference(images[0][None].double(), [dict(ori_shape=shape[0])])[0]
    assert torch.isfinite(a).all() and (a - b).abs().max() > 1e-4
    out = plain.encoder(images[0][None, :, :224, :224].double())
    assert out.outliers is None


def test_without_data_samples_outputs_follow_the_inputs(make_segmentor, images):
    out = make_segmentor(pm='L2').predict(images[2][None].double())
    assert isinstance(out[0], SegDataSample)
    assert out[0].pred_sem_seg.data.shape == (1, 200, 180)
    assert out[0].seg_logits.data.shape == (21, 200, 180)


def test_whole_image_mode_batches_same_size_images(make_segmentor, images):
    seg = make_segmentor(pm='SOM', slide_crop=0)
    crops = torch.stack([images[0][:, :160, :208], images[1][:, :160, :208]]).double()
    batched = seg.predict(crops)
    for i in range(2):
        single = seg.predict(crops[i:i + 1])[0]
        assert torch.equal(batched[i].pred_sem_seg.data, single.pred_sem_seg.data)


def test_pamr_refinement_runs_and_changes_logits(make_segmentor, images):
    plain = make_segmentor(pm='SOM')
    refined = make_segmentor(pm='SOM', pamr_steps=2)
    meta = [dict(ori_shape=(200, 180))]
    a = plain.inference(images[2][None].double(), meta)[0]
    b = refined.inference(images[2][None].double(), meta)[0]
    assert b.shape == a.shape and (a - b).abs().max() > 1e-6


# Measured on the golden images against fp64: fp32 logits within 4e-7, bf16 predictions
# agree on >= 99.5% of pixels, fp16 on >= 99.9%.
@pytest.mark.parametrize('precision,min_agreement', [('fp32', 1.0), ('bf16', 0.97),
                                                     ('fp16', 0.97)])
def test_precisions_agree_with_fp64(golden, make_segmentor, precision, min_agreement):
    reference = make_segmentor(pm='SOM')
    seg = make_segmentor(pm='SOM', precision=precision)
    assert seg.dtype == sfp.clip.precision_dtype(precision)
    for i, meta in enumerate(golden.meta['images']):
        shape = tuple(meta['ori_shape'])
        x = golden.image_input(i)[None]
        ref = reference.predict(x.double(), samples_for([shape]))[0]
        out = seg.predict(x, samples_for([shape]))[0]
        agreement = (out.pred_sem_seg.data == ref.pred_sem_seg.data).float().mean()
        assert agreement >= min_agreement
        if precision == 'fp32':
            logits = seg.inference(x, [dict(ori_shape=shape)])[0]
            ref_logits = reference.inference(x.double(), [dict(ori_shape=shape)])[0]
            assert (logits.double() - ref_logits).abs().max() <= 1e-4


@pytest.mark.parametrize('kwargs,message', [
    (dict(pm='KMEANS'), "unknown outlier detector pm='KMEANS'; choose from .*L2, LOF, SOM"),
    (dict(pm=dict(type='LOF', neighbours=3)), "bad arguments for outlier detector 'LOF'"),
    (dict(pm=3), 'pm must be a detector name'),
    (dict(precision='fp8'), 'precision must be one of fp32, fp16, bf16, fp64'),
    (dict(prob_thd=1.5), r'prob_thd must be a probability in \[0, 1\], got 1.5'),
    (dict(slide_crop=-1), 'slide_crop must be a non-negative int'),
    (dict(slide_stride=0), 'slide_stride must be a positive int'),
    (dict(area_thd=2), 'area_thd must be None or a fraction'),
    (dict(crop_batch_size=0), 'crop_batch_size must be None .* or a positive int'),
    (dict(logit_scale=0), 'logit_scale must be positive'),
    (dict(encoder_cfg=dict(pre_guidance_block=12)),
     'pre_guidance_block = 12: must be a block from 1 to 11'),
    (dict(device='cuda:0'), 'CUDA is not available'),
    (dict(name_path='missing_classes.txt'), 'class-name file not found'),
    (dict(clip_path='ViT-X/1'), 'unknown CLIP model'),
])
def test_bad_arguments_give_clear_errors(kwargs, message):
    args = dict(clip_path=str(TINY_CKPT), name_path=str(CLASSNAMES / 'cls_voc21.txt'),
                device='cpu')
    args.update(kwargs)
    if 'cuda' in str(kwargs.get('device', '')) and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        sfp.SFPSegmentor(**args)


def test_bad_input_shape(make_segmentor):
    with pytest.raises(ValueError, match=r'expected images of shape \(3, H, W\)'):
        make_segmentor(pm='SOM').predict(torch.zeros(1, 4, 32, 32, dtype=torch.float64))


def test_training_is_refused(make_segmentor):
    with pytest.raises(RuntimeError, match='training-free'):
        make_segmentor(pm='SOM').loss(None, None)


def test_crop_batches_follow_the_memory_budget(make_segmentor, images):
    roomy = make_segmentor(pm='SOM', memory_budget_mb=4096)
    tight = make_segmentor(pm='SOM', memory_budget_mb=1)
    assert tight.crops_per_batch((224, 224)) == 1
    assert roomy.crops_per_batch((224, 224)) > roomy.crops_per_batch((448, 448)) > 1
    assert make_segmentor(pm='SOM', crop_batch_size=7).crops_per_batch((224, 224)) == 7
    shapes = [(336, 505), (336, 462)]
    a = roomy.predict(images[:2], samples_for(shapes))
    b = tight.predict(images[:2], samples_for(shapes))
    for x, y in zip(a, b):
        assert torch.equal(x.pred_sem_seg.data, y.pred_sem_seg.data)


def test_enhancer_and_integrator_ablations(make_segmentor, images):
    meta = [dict(ori_shape=(336, 505))]
    full = make_segmentor(pm='SOM').inference(images[0][None].double(), meta)[0]
    for part in ('enhancer', 'integrator'):
        seg = make_segmentor(pm='SOM', encoder_cfg={part: None})
        assert getattr(seg.encoder, part) is None
        ablated = seg.inference(images[0][None].double(), meta)[0]
        assert torch.isfinite(ablated).all() and (ablated - full).abs().max() > 1e-6
