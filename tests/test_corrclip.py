"""CorrCLIP against its release's golden outputs (float64, tiny CLIP and tiny DINO, the
golden's instance masks as the release's ``<stem>.npz`` files) through the VOC21 config;
batching, purification, every benchmark config, the pieces by hand; map correction on
another method."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

from sfp.masks import build_mask_generator
from sfp.masks.sam2_generator import paint_regions
from sfp.methods import CorrCLIPEncoder
from sfp.methods.corrclip import MERGED_ID_OFFSET, merge_regions, scope_mask
from sfp.models import correct_map

from .conftest import REPO, TINY_CKPT, TINY_DINO, sample
from .test_cass import CASSGolden

TOL = 1e-9
BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')
# The release's settings per benchmark (../shared/docs/CORRCLIP.md): short side, crop,
# prob_thd, mask folder.
RELEASED = {
    'voc21': (336, 336, 0.2, 'voc'), 'context60': (336, 336, 0.15, 'context'),
    'coco_object': (336, 336, 0.25, 'coco'), 'voc20': (336, 336, 0.0, 'voc'),
    'context59': (336, 336, 0.0, 'context'), 'coco_stuff164k': (336, 336, 0.0, 'coco'),
    'cityscapes': (448, 224, 0.0, 'city'), 'ade20k': (448, 336, 0.0, 'ade'),
}


# The compact copy of CorrCLIP's golden file (fixtures/make_corrclip_fixture.py).
GOLDEN = CASSGolden('corrclip_compact.npz')
CASE = GOLDEN.meta['cases'][0]
PREFIX = CASE['name']


def write_masks(folder: Path, maps: dict) -> Path:
    """Region maps as the release's files: ``<stem>.npz`` with key ``instance_mask``."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, regions in maps.items():
        np.savez(folder / f'{stem}.npz', instance_mask=np.asarray(regions))
    return folder


def samples(shapes, paths):
    return [SegDataSample(metainfo=dict(ori_shape=shape, img_path=str(path)))
            for shape, path in zip(shapes, paths)]


def config(benchmark):
    return Config.fromfile(str(REPO / 'configs' / 'corrclip' /
                               f'corrclip_vit-b16_{benchmark}.py'))


@pytest.fixture(scope='module')
def golden_masks(tmp_path_factory):
    """The golden's instance masks, written as the release writes its files."""
    return write_masks(tmp_path_factory.mktemp('corrclip_masks'), {
        Path(image['file']).stem: GOLDEN.arrays[f'{PREFIX}/{i}/instance_mask']
        for i, image in enumerate(CASE['images'])})


@pytest.fixture(scope='module')
def corrclip(golden_masks):
    """The VOC21 config on the tiny CLIP and DINO in float64, pointed at the golden's
    masks as the hidden check does."""
    cfg = config('voc21')
    params = CASE['params']
    model = cfg.model
    assert (model.logit_scale, model.prob_thd, model.slide_crop, model.slide_stride,
            model.pad_crops, model.pamr_steps, model.area_thd) == \
        (params['logit_scale'], params['prob_thd'], params['slide_crop'],
         params['slide_stride'], params['pad_multiple'], params['pamr_steps'],
         params['area_thd'])
    encoder = {k: model.encoder[k] for k in ('alpha', 'beta', 'tau', 'dbscan_eps',
                                             'dbscan_min_samples', 'pad_mask_value')}
    assert encoder == {k: params[k] for k in encoder}
    assert model.vfm_path == params['dino_type'] and model.map_correction
    model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), device='cpu',
                 precision='fp64', return_probs=True, instance_mask_path=str(golden_masks))
    return MODELS.build(model)


@pytest.fixture(scope='module')
def golden_run(corrclip):
    """Both golden images through one ``predict`` call, with the features and trace of
    each image's first crop (its crops are encoded in window order, image after image)."""
    crops, encoder = [], corrclip.encoder
    original = encoder.forward_with_trace

    def recording(images, regions):
        out, trace = original(images, regions)
        crops.extend((out.features[b], trace, b) for b in range(len(images)))
        return out, trace

    encoder.forward_with_trace = recording
    try:
        outs = corrclip.predict([GOLDEN.image_input(image) for image in CASE['images']],
                                samples([tuple(image['ori_shape']) for image in CASE['images']],
                                        [image['file'] for image in CASE['images']]))
    finally:
        del encoder.forward_with_trace
    firsts = np.cumsum([0] + [image['n_crops'] for image in CASE['images']])[:-1]
    return [(out, crops[first]) for out, first in zip(outs, firsts)]


def expected_probs(logits, query_idx, scale):
    """The release's class probabilities from (K, Q) logits: softmax of scale x logits,
    the background the max over its names (listed first)."""
    probs = torch.softmax(scale * logits, dim=-1)
    background = int((query_idx == 0).sum())
    return torch.cat([probs[:, :background].max(dim=-1, keepdim=True).values,
                      probs[:, background:]], dim=-1)


def test_release_outputs_are_reproduced(corrclip, golden_run):
    seg = corrclip
    assert seg.query_idx.tolist() == CASE['query_idx'] and seg.num_classes == 21
    assert (seg.query_features - GOLDEN.tensor(f'{PREFIX}/query_features')).abs().max() <= TOL
    for i, (image, (out, (features, trace, b))) in enumerate(zip(CASE['images'], golden_run)):
        key = f'{PREFIX}/{i}'
        assert image['crop0_box'] == [0, 336, 0, 336] and image['n_crops'] == 3
        # Crop 0: DINO, the masks, merging, scope, region tokens, branches, features.
        index = GOLDEN.tensor(f'{key}/dino_idx')
        assert (trace.dino_features[b, index] - GOLDEN.tensor(f'{key}/dino_feats')).abs() \
            .max() <= 1e-12
        merge = trace.merges[b]
        assert torch.equal(trace.grid_regions[b], GOLDEN.tensor(f'{key}/grid_mask').long())
        assert torch.equal(merge.values, GOLDEN.tensor(f'{key}/region_values').long())
        assert (merge.distances - GOLDEN.tensor(f'{key}/dbscan_dist')).abs().max() <= 1e-12
        assert torch.equal(merge.labels, GOLDEN.tensor(f'{key}/dbscan_labels'))
        assert torch.equal(merge.merged, GOLDEN.tensor(f'{key}/merged_mask').long())
        assert abs(trace.similarity_mean[b].item() - image['crop0_sim_mean']) <= 1e-12
        assert torch.equal(trace.allowed[b].sum(dim=1),
                           GOLDEN.tensor(f'{key}/allowed_per_row').long())
        assert torch.equal(trace.token_regions[b], GOLDEN.tensor(f'{key}/token_mask').long())
        count = image['crop0_num_mct']
        assert trace.num_region_tokens[b] == count
        assert (trace.region_tokens[b, :count] - GOLDEN.tensor(f'{key}/mct')).abs().max() <= TOL
        positions = GOLDEN.tensor(f'{key}/branch_idx')
        assert (trace.branches[b][:, positions].transpose(0, 1) -
                GOLDEN.tensor(f'{key}/branches')).abs().max() <= TOL
        stride = max(1, image['crop0_tokens'] // 64)
        assert features.shape[0] == image['crop0_tokens'] == 42 * 42
        assert (features[::stride] - GOLDEN.tensor(f'{key}/crop0_features')).abs().max() <= TOL
        # Logits: the probabilities predict stores, against the golden logits' (40 x
        # amplifies the logits' differences).
        yx = GOLDEN.tensor(f'{key}/sample_yx')
        want = expected_probs(GOLDEN.tensor(f'{key}/logits'), seg.query_idx, seg.logit_scale)
        assert (sample(out.seg_logits.data, yx) - want).abs().max() <= 40 * TOL
        # The maps: final, before map correction, without the threshold.
        assert torch.equal(out.pred_sem_seg.data[0], GOLDEN.tensor(f'{key}/pred').long())
        probs = out.seg_logits.data
        best, labels = probs.max(dim=0)
        thresholded = torch.where(best < seg.prob_thd, 0, labels)
        assert torch.equal(thresholded, GOLDEN.tensor(f'{key}/pred_no_correction').long())
        regions = GOLDEN.tensor(f'{key}/instance_mask').long()
        assert torch.equal(correct_map(labels, regions, 21),
                           GOLDEN.tensor(f'{key}/pred_no_thd').long())


def synthetic_regions(height, width, seed=0):
    """A region map of rectangles with shuffled ids, those divisible by 5 made the
    unsegmented 0 (as the golden's recipe)."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.arange(height)[:, None] // 23, torch.arange(width)[None, :] // 31
    blocks = rows * 100 + cols
    ids = torch.randperm(int(blocks.max()) + 1, generator=gen) + 1
    regions = ids[blocks]
    return torch.where(regions % 5 == 0, 0, regions)


def small_segmentor(masks, **changes):
    args = dict(type='SFPSegmentor', clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO),
                name_path=[['sky'], ['tree'], ['dog']], templates=['{}'], text_cache=False,
                device='cpu', precision='fp64', encoder=dict(type='corrclip'),
                masks=str(masks), map_correction=True, slide_crop=336, slide_stride=112,
                pad_crops=56, return_probs=True)
    args.update(changes)
    return MODELS.build(args)


def test_batched_prediction_equals_single_images(tmp_path):
    """Three images of two sizes in one batch, each one window smaller than the crop,
    padded to multiples of 56 (112 x 168 and 112 x 112; the masks padded with 10000), with
    different region counts."""
    a = GOLDEN.image_input(CASE['images'][0])
    b = GOLDEN.image_input(CASE['images'][1])
    images = [a[:, :100, :130], b[:, :100, :130], b[:, 30:120, 10:110]]
    shapes = [(110, 140), (100, 130), (95, 105)]
    paths = [tmp_path / f'{name}.jpg' for name in 'abc']
    masks = write_masks(tmp_path / 'masks', {
        p.stem: synthetic_regions(*shape, seed=k).int().numpy()
        for k, (p, shape) in enumerate(zip(paths, shapes))})
    seg = small_segmentor(masks)
    batched = seg.predict(images, samples(shapes, paths))
    for image, shape, path, out in zip(images, shapes, paths, batched):
        single = seg.predict(image[None], samples([shape], [path]))[0]
        assert out.pred_sem_seg.data.shape == (1, *shape)
        assert torch.equal(out.pred_sem_seg.data, single.pred_sem_seg.data)
        assert (out.seg_logits.data - single.seg_logits.data).abs().max() <= 1e-12


def test_purification_changes_the_main_branch_only(tmp_path):
    """purify=True: block L-1's output with its outliers (L2 detector) replaced by their
    neighbours' mean; the main branch is the release's formula on those tokens; the
    spatial branch (blocks 6-10) is untouched."""
    from sfp.methods.proxyclip import values_on_grid
    from sfp.models import build_detector, mitigate_outliers

    purified = small_segmentor(write_masks(tmp_path, {}), purify=True, pm='L2').encoder
    crop = GOLDEN.image_input(CASE['images'][0])[None, :, :168, :224]
    regions = synthetic_regions(168, 224)[None]
    out, trace = purified.forward_with_trace(crop, regions)
    detector, purified.detector = purified.detector, None
    _, reference = purified.forward_with_trace(crop, regions)
    purified.detector = detector
    visual = purified.visual
    tokens = visual.embed(crop)
    for block in visual.blocks[:-1]:
        tokens = block(tokens)
    outliers = build_detector('L2')(tokens, None, (10, 14))
    assert outliers.positions(0) and out.outliers.positions(0) == outliers.positions(0)
    tokens = torch.cat([tokens[:, :1], mitigate_outliers(tokens[:, 1:], outliers.mask(),
                                                         (10, 14))], dim=1)
    attention, _, _ = purified.attention(trace.dino_features, trace.merges[0].merged.view(1, -1))
    main = visual.blocks[-1].attn.out_proj(
        attention @ values_on_grid(visual.blocks[-1], tokens, (10, 14), (21, 28)))
    assert (trace.branches[:, 0] - visual.ln_post(main)).abs().max() <= 1e-12
    assert (trace.branches[:, 0] - reference.branches[:, 0]).abs().max() > 1e-6
    assert (trace.branches[:, 1] - reference.branches[:, 1]).abs().max() <= 1e-12


@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_config_builds_and_segments(benchmark, tmp_path):
    """The release's settings, and one image through each config on the tiny weights."""
    cfg = config(benchmark)
    short_side, crop, prob_thd, folder = RELEASED[benchmark]
    resize = [s for s in cfg.test_dataloader.dataset.pipeline if s.type == 'Resize'][0]
    assert (resize.scale[1], cfg.model.slide_crop, cfg.model.prob_thd) == \
        (short_side, crop, prob_thd)
    assert cfg.model.masks == f'data/region_masks/{folder}'
    masks = write_masks(tmp_path, {'photo': synthetic_regions(64, 100).numpy()})
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO), device='cpu',
                     templates=['{}'], text_cache=False, masks=str(masks))
    seg = MODELS.build(cfg.model)
    assert isinstance(seg.encoder, CorrCLIPEncoder) and seg.map_correction
    assert seg.num_classes == len(DATASETS.get(cfg.test_dataloader.dataset.type)
                                  .METAINFO['classes'])
    image = torch.randn(3, 64, 100, generator=torch.Generator().manual_seed(2))
    out = seg.predict(image[None], samples([(64, 100)], [tmp_path / 'photo.jpg']))[0]
    assert out.pred_sem_seg.data.shape == (1, 64, 100)
    assert int(out.pred_sem_seg.data.max()) < seg.num_classes


def test_merging_and_scope_by_hand():
    """Four regions on a 2 x 4 grid: region 0 unsegmented; regions 1 and 2 share a
    feature direction (merged: distance 0), region 3 is orthogonal (its own cluster)."""
    e = torch.eye(3, dtype=torch.float64)
    features = torch.stack([e[0], e[1], e[1], e[1], e[2], e[2], e[0], e[1]])
    regions = torch.tensor([[0, 4, 4, 7], [9, 9, 0, 4]])
    merge = merge_regions(features, regions, eps=0.2, min_samples=1)
    assert merge.values.tolist() == [0, 4, 7, 9]
    assert merge.labels.tolist() == [0, 0, 1]  # 4 and 7 have the same mean (e[1])
    offset = MERGED_ID_OFFSET
    assert merge.merged.tolist() == [[0, offset, offset, offset],
                                     [offset + 1, offset + 1, 0, offset]]
    similarity = features @ features.t()
    allowed = scope_mask(similarity[None], merge.merged.view(1, -1))[0]
    mean = similarity.mean()
    for i in range(8):
        for j in range(8):
            a, b = merge.merged.view(-1)[i], merge.merged.view(-1)[j]
            expected = (a == b != 0) or ((a == 0 or b == 0) and similarity[i, j] > mean)
            assert bool(allowed[i, j]) == bool(expected)
    # Two ids: nothing merged.
    assert merge_regions(features, torch.tensor([[0, 3, 3, 3], [3, 0, 0, 3]]), 0.2, 1) \
        .distances is None


def test_map_correction_by_hand():
    """Every region but the smallest id takes its majority label; a tie goes to the
    smallest label; EoMT's -1 as the unsegmented id."""
    labels = torch.tensor([[1, 1, 2, 0, 0],
                           [1, 2, 2, 3, 3],
                           [4, 4, 2, 3, 1]])
    regions = torch.tensor([[5, 5, 5, -1, -1],
                            [5, 8, 8, 9, 9],
                            [-1, -1, 8, 9, 9]])
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 2, 2, 3, 3],
                             [4, 4, 2, 3, 3]])
    assert torch.equal(correct_map(labels, regions, 5), expected)
    tie = torch.tensor([[3, 3, 1, 2]])
    assert correct_map(tie, torch.tensor([[0, 2, 2, 2]]), 4).tolist() == [[3, 1, 1, 1]]
    assert correct_map(tie, torch.tensor([[2, 2, 2, 2]]), 4).tolist() == [[3, 3, 1, 2]]
    with pytest.raises(ValueError, match=r'region map is \(2, 4\) but the label map is'):
        correct_map(tie, torch.zeros(2, 4, dtype=torch.long), 4)


def test_map_correction_on_another_method(tmp_path):
    """CLIP's labels with map_correction=True: each region's majority label of its own
    uncorrected labels, counted here with numpy."""
    shape = (150, 200)
    regions = synthetic_regions(*shape, seed=3)
    masks = write_masks(tmp_path, {'photo': regions.numpy()})
    image = GOLDEN.image_input(CASE['images'][1])[:, :150, :200]
    meta = samples([shape], [tmp_path / 'photo.jpg'])
    kwargs = dict(encoder=dict(type='clip'), vfm_path=None, pad_crops=False, slide_crop=112,
                  slide_stride=56, name_path=[['sky'], ['tree'], ['wall'], ['floor']])
    plain = small_segmentor(masks, map_correction=False, **kwargs)
    corrected = small_segmentor(masks, **kwargs)
    before = plain.predict(image[None], meta)[0].pred_sem_seg.data[0].numpy()
    after = corrected.predict(image[None], samples([shape], [tmp_path / 'photo.jpg']))[0]
    expected = before.copy()
    ids = regions.numpy()
    for region in np.unique(ids)[1:]:
        inside = ids == region
        expected[inside] = np.bincount(before[inside]).argmax()
    assert (expected != before).any()
    assert np.array_equal(after.pred_sem_seg.data[0].numpy(), expected)


def test_sam2_masks_are_painted_as_released():
    """Masks sorted by area ascending get ids 1..K, larger ones painted over smaller."""
    big = np.zeros((3, 4), dtype=bool)
    big[:, :3] = True
    small = np.zeros((3, 4), dtype=bool)
    small[1, 1:] = True
    other = np.zeros((3, 4), dtype=bool)
    other[0, 3] = True
    annotations = [dict(segmentation=big, area=9), dict(segmentation=small, area=3),
                   dict(segmentation=other, area=1)]
    assert paint_regions(annotations, (3, 4)).tolist() == [[3, 3, 3, 1],
                                                           [3, 3, 3, 2],
                                                           [3, 3, 3, 0]]
    assert paint_regions([], (2, 2)).tolist() == [[0, 0], [0, 0]]


def test_sam2_generator_runs_sam2_with_the_releases_settings(monkeypatch, tmp_path):
    """With a stand-in for the sam2 package: the release's model and generator settings,
    the image handed over as it is, the masks painted; a missing checkpoint or package is
    one line saying what to get."""
    calls = {}

    def build_sam2(config, checkpoint, device, apply_postprocessing):
        calls['build'] = (config, Path(checkpoint).name, device, apply_postprocessing)
        return torch.nn.Linear(1, 1)

    class AutomaticMaskGenerator:
        def __init__(self, model, **settings):
            calls['settings'] = settings

        def generate(self, image):
            calls['image'] = image
            mask = np.zeros(image.shape[:2], dtype=bool)
            mask[:2] = True
            return [dict(segmentation=mask, area=int(mask.sum()))]

    build_module = types.ModuleType('sam2.build_sam')
    build_module.build_sam2 = build_sam2
    generator_module = types.ModuleType('sam2.automatic_mask_generator')
    generator_module.SAM2AutomaticMaskGenerator = AutomaticMaskGenerator
    for name, module in [('sam2', types.ModuleType('sam2')), ('sam2.build_sam', build_module),
                         ('sam2.automatic_mask_generator', generator_module)]:
        monkeypatch.setitem(sys.modules, name, module)
    checkpoint = tmp_path / 'sam2_hiera_large.pt'
    with pytest.raises(FileNotFoundError, match='SAM2 checkpoint .*sam2_hiera_large.pt not '
                                                'found'):
        build_mask_generator(dict(type='sam2', checkpoint=str(checkpoint)))
    checkpoint.write_bytes(b'')
    generator = build_mask_generator(dict(type='SAM2AutomaticMasks', checkpoint=checkpoint))
    assert calls['build'] == ('configs/sam2/sam2_hiera_l.yaml', 'sam2_hiera_large.pt', 'cpu',
                              False)
    assert calls['settings'] == dict(points_per_side=8, pred_iou_thresh=0.4,
                                     stability_score_thresh=0.4, multimask_output=False)
    image = np.full((4, 5, 3), 7, dtype=np.uint8)
    regions = generator(image)
    assert calls['image'] is image
    assert regions.label_map().tolist() == [[1] * 5, [1] * 5, [0] * 5, [0] * 5]
    monkeypatch.setitem(sys.modules, 'sam2.build_sam', None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs the sam2 package: pip install -e "
                                          r"'\.\[sam2\]'"):
        build_mask_generator('sam2')


def test_analysis_shows_the_attention_within_regions(tmp_path):
    """compare_last_block_attention with the image's regions: CorrCLIP's attention on
    DINO's grid, no segmented patch attending to another merged region's; without
    regions, one line saying what it needs."""
    from sfp.analysis import _prepared_crop, compare_last_block_attention

    seg = small_segmentor(write_masks(tmp_path, {}))
    image = np.ascontiguousarray(GOLDEN.images['resized/336/1'].transpose(1, 2, 0)[:120, :150])
    regions = synthetic_regions(120, 150, seed=5).numpy()
    shown = compare_last_block_attention({'corrclip': seg}, image, crop=112, short_side=120,
                                         regions=regions)
    attention = shown.methods['corrclip']
    assert attention.grid == (14, 14) and attention.weights.shape == (1, 196, 196)
    weights = attention.weights[0].double()
    assert (weights.sum(dim=-1) - 1).abs().max() <= 1e-5
    # The crop's regions: nearest to the resized image (here its own size), the centre.
    crop = torch.from_numpy(regions)[4:116, 19:131].long()
    _, x = _prepared_crop(seg, image, 112, 120)
    _, _, _, merges, expected, _, _ = seg.encoder.scope(x, crop[None])
    assert (weights - expected[0]).abs().max() <= 1e-6  # shown in float32
    merged = merges[0].merged.flatten()
    segmented = merged != merged.min()
    outside = merged[:, None] != merged[None, :]
    assert weights[segmented[:, None] & segmented[None, :] & outside].abs().max() == 0
    with pytest.raises(ValueError, match="CorrCLIP's attention depends on each crop's regions"):
        compare_last_block_attention({'corrclip': seg}, image, crop=112, short_side=120)
