"""SFPSegmentor: registration, the release's defects fixed, batching, precisions, errors."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import sfp
from sfp.models import PAMR, OutlierDetector, Outliers, SFPEncoder

from .conftest import CLASSNAMES, TINY_CKPT
from .test_detectors import mitigated_by_hand


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


class NoOutliers(OutlierDetector):
    """A detector that finds nothing."""

    def forward(self, tokens, attention, grid):
        return Outliers(torch.zeros(tokens.shape[0], 0, dtype=torch.long), grid)


class FixedOutliers(OutlierDetector):
    """Reports the same flat patch indices for every crop."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    def forward(self, tokens, attention, grid):
        return Outliers(torch.tensor([self.index] * tokens.shape[0]), grid)


def test_purify_false_equals_a_detector_that_finds_nothing(make_segmentor, images):
    plain = make_segmentor(purify=False)
    assert plain.encoder.detector is None
    nothing = make_segmentor(encoder_cfg=dict(detector=NoOutliers()))
    meta = [dict(ori_shape=(200, 180))]
    a = plain.inference(images[2][None].double(), meta)[0]
    b = nothing.inference(images[2][None].double(), meta)[0]
    assert (a - b).abs().max() <= 1e-12  # rounding: the mitigated copy is a new tensor
    assert plain.encoder(images[0][None, :, :224, :224].double()).outliers is None


def test_purification_changes_exactly_the_detected_tokens(make_segmentor, images):
    plain, purified = make_segmentor(purify=False), make_segmentor(pm='SOM')
    crop = images[0][None, :, :224, :224].double()
    before, after = plain.encoder.walk(crop), purified.encoder.walk(crop)
    positions = after.outliers.positions(0)
    assert len(positions) == 10
    expected = mitigated_by_hand(before.tokens[0], positions, after.grid)
    assert (after.tokens[0] - expected).abs().max() <= 1e-12
    # Elsewhere only rounding differs: SOM makes the detection block materialise its
    # attention weights instead of running the fused kernel.
    clean = torch.cat([torch.tensor([True]), ~after.outliers.mask()[0]])
    assert (after.tokens[0][clean] - before.tokens[0][clean]).abs().max() <= 1e-12
    for block, tokens in before.outputs.items():  # blocks the head reads, as walked
        assert torch.equal(after.outputs[block], tokens)
    # Detection and mitigation are all that purification adds: the same encoder with
    # those outliers given reproduces the features.
    given = SFPEncoder(plain.encoder.visual, FixedOutliers(after.outliers.index[0].tolist()),
                       enhancer=plain.encoder.enhancer, integrator=plain.encoder.integrator)
    assert (given(crop).features - purified.encoder(crop).features).abs().max() <= 1e-12


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
        assert (batched[i].seg_logits.data - single.seg_logits.data).abs().max() <= 1e-12


def test_pamr_refines_the_plain_logits_with_the_image_at_the_output_size(make_segmentor,
                                                                         images):
    x, size = images[2][None].double(), (150, 120)  # output smaller than the input
    plain = make_segmentor(pm='SOM').inference(x, [dict(ori_shape=size)])[0]
    refined = make_segmentor(pm='SOM', pamr_steps=2).inference(x, [dict(ori_shape=size)])[0]
    image = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    expected = PAMR(num_iter=2, dilations=(8, 16))(image, plain[None])[0]
    assert (refined - expected).abs().max() <= 1e-12
    # Each step is a convex combination of neighbours: values stay in each query's range.
    assert (refined.amin(dim=(1, 2)) >= plain.amin(dim=(1, 2)) - 1e-12).all()
    assert (refined.amax(dim=(1, 2)) <= plain.amax(dim=(1, 2)) + 1e-12).all()


@pytest.fixture(scope='module')
def fp64_reference(golden, make_segmentor):
    """fp64 query logits of the golden images and their post-processed predictions."""
    seg = make_segmentor(pm='SOM')
    results = []
    for i, meta in enumerate(golden.meta['images']):
        shape = tuple(meta['ori_shape'])
        logits = seg.inference(golden.image_input(i)[None].double(), [dict(ori_shape=shape)])
        results.append((logits[0], seg.postprocess_result(logits, samples_for([shape]))[0]))
    return results


# The bounds docs/faithful.md states, measured on these three images
# against fp64: logits within 2.6e-7 (fp32), 1.6e-3 (fp16), 2.8e-3 (bf16); probabilities
# within 1.2e-6, 1.5e-2, 2.4e-2; labels agreeing on 100%, >= 99.978% and >= 99.367% of
# the pixels of every image.  Bounds: logits and probabilities about 1.5x to 4x the
# measured error; agreement floors below the worst image.  The fp16 probability error
# depends on the CPU's half-precision kernels (5.0e-3 on one 2-core machine, 1.5e-2 on
# another, with the same logit error): logit_scale 50 turns a 1.6e-3 logit error into up
# to 8% of a softmax exponent.
@pytest.mark.parametrize('precision,logit_tol,prob_tol,min_agreement', [
    ('fp32', 4e-7, 4e-6, 1.0), ('fp16', 4e-3, 3e-2, 0.999), ('bf16', 1e-2, 5e-2, 0.99)])
def test_precisions_agree_with_fp64(golden, make_segmentor, fp64_reference, precision,
                                    logit_tol, prob_tol, min_agreement):
    seg = make_segmentor(pm='SOM', precision=precision)
    assert seg.dtype == sfp.clip.precision_dtype(precision)
    for i, (ref_logits, ref) in enumerate(fp64_reference):
        shape = tuple(golden.meta['images'][i]['ori_shape'])
        logits = seg.inference(golden.image_input(i)[None], [dict(ori_shape=shape)])
        out = seg.postprocess_result(logits, samples_for([shape]))[0]
        assert (logits[0].double() - ref_logits).abs().max() <= logit_tol
        assert (out.seg_logits.data.double() - ref.seg_logits.data).abs().max() <= prob_tol
        agreement = (out.pred_sem_seg.data == ref.pred_sem_seg.data).double().mean()
        assert agreement >= min_agreement


@pytest.mark.parametrize('kwargs,message', [
    (dict(pm='KMEANS'), "unknown outlier detector pm='KMEANS'; choose from .*L2, LOF, SOM"),
    (dict(pm=dict(type='LOF', neighbours=3)), "bad arguments for outlier detector 'LOF'"),
    (dict(pm=3), 'pm must be a detector name'),
    (dict(precision='fp8'), 'precision must be one of fp32, fp16, bf16, fp64'),
    (dict(prob_thd=1.5), r'prob_thd must be a probability in \[0, 1\], got 1.5'),
    (dict(slide_crop=-1), 'slide_crop must be a non-negative int'),
    (dict(slide_stride=0), 'slide_stride must be a positive int'),
    (dict(slide_stride=None), r'slide_stride must be a positive int for sliding windows '
                              r'\(slide_crop = 224\), got None'),
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
        assert (x.seg_logits.data - y.seg_logits.data).abs().max() <= 1e-12


# A similarity threshold just below 1 keeps only each token's similarity to itself (the
# test checks that no two tokens are that similar): every aggregation then scales a token
# by 1 / (1 + 1e-6), and the guidance attention is the identity.
DIAGONAL = 1 - 1e-7
KEEP = 1 / (1 + 1e-6)


def block_outputs(visual, crops):
    """{block: (B, 1 + N, C) output} of blocks 1..L-1, run one by one."""
    x, outputs = visual.embed(crops), {}
    for index, block in enumerate(visual.blocks[:visual.num_blocks - 1], start=1):
        x = outputs[index] = block(x)
    return outputs


def split_heads(x, heads):
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)  # (B, heads, N, d)


def enhancer_by_hand(block, patches, cls, cls_residual=0.3):
    """The enhancer's docstring with A_g the identity: out_proj([softmax(QQ^T / sqrt(d))
    + softmax(KK^T / sqrt(d)) + I] V / 3) + cls_residual * CLS."""
    heads, c = block.attn.num_heads, patches.shape[-1]
    qkv = block.ln_1(patches) @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias
    q, k, v = (split_heads(t, heads) for t in qkv.split(c, dim=-1))
    scale = (c // heads) ** -0.5
    mixed = (torch.softmax(q @ q.transpose(-2, -1) * scale, -1) @ v
             + torch.softmax(k @ k.transpose(-2, -1) * scale, -1) @ v + v) / 3
    merged = mixed.transpose(1, 2).reshape(patches.shape)
    return block.attn.out_proj(merged) + cls_residual * cls


def integrator_by_hand(block, summed, cls_residual=0.3):
    """The integrator's docstring with A_g the identity: out_proj(V(ln_1(H_p)))
    + cls_residual * H_cls."""
    c = summed.shape[-1]
    v = block.ln_1(summed[:, 1:]) @ block.attn.in_proj_weight[2 * c:].t() \
        + block.attn.in_proj_bias[2 * c:]
    return block.attn.out_proj(v) + cls_residual * summed[:, :1]


@pytest.mark.parametrize('enhancer,integrator', [(False, False), (False, True), (True, False),
                                                 (True, True)])
def test_enhancer_and_integrator_ablations(make_segmentor, images, enhancer, integrator):
    cfg = dict(similarity_threshold=DIAGONAL)
    cfg.update({part: None for part, on in [('enhancer', enhancer), ('integrator', integrator)]
                if not on})
    seg = make_segmentor(purify=False, encoder_cfg=cfg)
    assert (seg.encoder.enhancer is None) != enhancer
    assert (seg.encoder.integrator is None) != integrator
    visual = seg.encoder.visual
    crop = images[0][None, :, :224, :224].double()
    outputs = block_outputs(visual, crop)
    for block in (seg.encoder.pre_guidance_block, seg.encoder.post_guidance_block):
        unit = torch.nn.functional.normalize(outputs[block][0, 1:], dim=-1)
        assert (unit @ unit.t()).fill_diagonal_(0).max() < DIAGONAL
    last, tokens = visual.blocks[-1], outputs[visual.num_blocks - 1]
    if enhancer:
        patches = KEEP * enhancer_by_hand(last, KEEP * tokens[:, 1:], tokens[:, :1])
    else:
        patches = KEEP ** 2 * tokens[:, 1:]
    if integrator:
        summed = sum(outputs[b] for b in range(4, 11))  # cross_s + 1 .. cross_e
        patches = patches + KEEP * integrator_by_hand(last, summed)
    expected = visual.project(patches)
    assert (seg.encoder(crop).features - expected).abs().max() <= 1e-10



def test_sfp_knobs_as_release_arguments_or_in_the_encoder_config():
    """res_cls, cross_s, cross_e: the release's SFPForSegmentation arguments and SFP's
    encoder config build the same parts (SOM's CLS weight tied to res_cls); given both,
    the release's arguments win; cross_s / cross_e with another method are an error."""
    base = dict(type='SFPForSegmentation', clip_path=str(TINY_CKPT),
                name_path=[['sky'], ['tree']], device='cpu', templates=['{}'], pm='SOM')
    release = MODELS.build(dict(base, res_cls=0.5, cross_s=2, cross_e=9))
    config = MODELS.build(dict(base, encoder=dict(type='SFPEncoder', res_cls=0.5, cross_s=2,
                                                  cross_e=9)))
    both = MODELS.build(dict(base, encoder=dict(type='sfp', res_cls=0.1, cross_s=5),
                             res_cls=0.5, cross_s=2, cross_e=9))
    default = MODELS.build(base)
    for seg, expected in ((release, (0.5, 3, 9)), (config, (0.5, 3, 9)), (both, (0.5, 3, 9)),
                          (default, (0.3, 4, 10))):
        encoder = seg.encoder
        assert encoder.integrator.blocks == expected[1:]
        assert encoder.integrator.cls_residual == encoder.enhancer.cls_residual == expected[0]
        assert encoder.detector.cls_weight == 5 * expected[0]
    # With another method res_cls still ties SOM's weight; the integrator's blocks do not exist.
    naclip = MODELS.build(dict(base, encoder=dict(type='naclip'), purify=True, res_cls=0.2))
    assert naclip.encoder.detector.cls_weight == 5 * 0.2
    with pytest.raises(ValueError, match="cross_e and cross_s set, but they choose the blocks "
                                         "of SFP's integrator; NACLIPEncoder has none"):
        MODELS.build(dict(base, encoder=dict(type='naclip'), cross_s=3, cross_e=10))
