"""CLIPtrase against its release's golden outputs (float64, tiny CLIP, the release's own
centre-crop protocol: fixtures/make_cliptrase_fixture.py), built from its VOC21 config;
its vote over the framework's windows, its last block and purification by hand; every
config; the centre-crop transform against the release's crops."""
import glob
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample
from PIL import Image

from sfp.datasets import LoadImageChecked, ResizeCenterCrop
from sfp.models import vote_in_regions
from sfp.registry import ENCODERS
from sfp.text import read_class_names

from .conftest import FIXTURES, REPO, TINY_CKPT, assert_batch_equals_single, sample

TOL = 1e-9
# The release normalises with CLIP's 0-1 constants (the goldens: in float64).
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711], dtype=torch.float64).view(3, 1, 1)
CONFIG = REPO / 'configs' / 'cliptrase' / 'cliptrase_vit-b16_voc21.py'
BACKGROUND = 20  # the release's VOC21 background id (mmseg's is 0)


class CLIPtraseGolden:
    """The compact copy of CLIPtrase's golden outputs."""

    def __init__(self, path):
        data = np.load(path)
        self.arrays = {k: data[k] for k in data.files}
        self.meta = json.loads(self.arrays.pop('meta').tobytes())
        self.cases = self.meta['cases']

    def tensor(self, key):
        return torch.from_numpy(self.arrays[key])

    def image_input(self, key):
        """The release's S x S crop (BGR uint8) to RGB, normalised in float64."""
        return (self.tensor(key).flip(0).double() / 255 - MEAN) / STD


GOLDEN = CLIPtraseGolden(FIXTURES / 'cliptrase_compact.npz')
CASES = [case['name'] for case in GOLDEN.cases]


def to_mmseg_ids(release_labels: torch.Tensor) -> torch.Tensor:
    """Release VOC21 ids (objects 0-19, background 20) -> mmseg's (background 0)."""
    labels = release_labels.long()
    return torch.where(labels == BACKGROUND, 0, labels + 1)


def query_order(case: dict, seg) -> list:
    """For each of our queries, the index of the same query in the release's order: our
    class c is the release's class c - 1 (background, ours 0, is its last)."""
    release = {}
    for index, cls in enumerate(case['query_idx']):
        release.setdefault(cls, []).append(index)
    order, seen = [], {}
    for cls in seg.query_idx.tolist():
        theirs = BACKGROUND if cls == 0 else cls - 1
        order.append(release[theirs][seen.get(cls, 0)])
        seen[cls] = seen.get(cls, 0) + 1
    return order


# The settings a golden case records, named as the segmentor's arguments.
SETTINGS = ('logit_scale', 'prob_thd', 'area_thd', 'slide_crop', 'slide_stride', 'pamr_steps')


@pytest.fixture(scope='module')
def case_segmentors():
    """Case name -> the VOC21 config on the tiny CLIP in float64.  The 224 case is the
    config as it is (its 224 window covers the 224 crop once); the 336 case takes the
    case's recorded settings (no window: the whole crop) and its two cluster options."""
    built = {}

    def make(name):
        if name not in built:
            case = GOLDEN.cases[CASES.index(name)]
            params, model = case['params'], Config.fromfile(str(CONFIG)).model
            if name == 'voc21_224':
                assert (model.encoder.dbscan_eps, model.encoder.dbscan_min_samples) == \
                    (params['eps'], params['min_samples'])
                assert model.slide_crop == params['image_size']
            else:
                model.update({k: params[k] for k in SETTINGS})
                model.encoder.update(dbscan_eps=params['eps'],
                                     dbscan_min_samples=params['min_samples'])
            model.update(clip_path=str(TINY_CKPT), device='cpu', precision='fp64',
                         return_probs=True)
            built[name] = MODELS.build(model)
        return built[name]

    return make


@pytest.mark.parametrize('name', CASES)
def test_release_outputs_are_reproduced(case_segmentors, name):
    seg = case_segmentors(name)
    case = GOLDEN.cases[CASES.index(name)]
    order = query_order(case, seg)
    assert [case['query_names'][i] for i in order] == \
        [n for names in read_class_names(seg_class_file(), True) for n in names]
    assert (seg.query_features - GOLDEN.tensor(f'{name}/query_features')[order]).abs().max() \
        <= TOL
    encoder = seg.encoder
    for i, image in enumerate(case['images']):
        prefix = f'{name}/{i}'
        x = GOLDEN.image_input(f'{prefix}/resized')
        size = tuple(x.shape[-2:])
        assert size == (case['params']['image_size'],) * 2
        walk = encoder.walk(x[None])
        tokens = encoder.tokens(walk)[0]
        features = GOLDEN.tensor(f'{prefix}/features')
        assert (tokens[1::image['token_stride']] - features).abs().max() <= TOL
        assert (tokens[0] - GOLDEN.tensor(f'{prefix}/cls_feature')).abs().max() <= TOL
        correlation = encoder.correlation(walk)[0]
        if f'{prefix}/correlation' in GOLDEN.arrays:
            expected = GOLDEN.tensor(f'{prefix}/correlation')
            assert (correlation[::image['token_stride']] - expected).abs().max() <= TOL
        clusters = encoder.regions.cluster(correlation)
        assert torch.equal(clusters, GOLDEN.tensor(f'{prefix}/cluster_labels').long())
        assert int(clusters.max()) + 1 == image['n_clusters']
        regions = encoder.regions.region_map(correlation, clusters, walk.grid, size)
        assert torch.equal(regions, GOLDEN.tensor(f'{prefix}/cluster_map').long())
        out = encoder(x[None])
        assert torch.equal(out.features[0], tokens[1:])
        before_vote = encoder.crop_labels(out.logits[0], size)
        assert torch.equal(before_vote, to_mmseg_ids(GOLDEN.tensor(f'{prefix}/pred_before_vote')))
        pred = to_mmseg_ids(GOLDEN.tensor(f'{prefix}/pred'))
        assert torch.equal(out.labels[0], pred)
        logits = seg.inference(x[None], [dict(ori_shape=size)])[0]
        got = sample(logits, GOLDEN.tensor(f'{prefix}/sample_yx'))
        assert (got - GOLDEN.tensor(f'{prefix}/logits')[:, order]).abs().max() <= TOL
        result = seg.predict(x[None], [SegDataSample(metainfo=dict(ori_shape=size))])[0]
        assert torch.equal(result.pred_sem_seg.data[0], pred)
        # One window: the class probabilities are that window's vote, one-hot.
        assert torch.equal(result.seg_logits.data, F.one_hot(pred, 21).permute(2, 0, 1).double())


def seg_class_file():
    return REPO / 'configs' / 'classnames' / 'cliptrase' / 'cls_voc21.txt'


def test_class_file_is_the_releases_in_mmseg_order():
    ours = read_class_names(seg_class_file(), allow_duplicates=True)
    for case in GOLDEN.cases:
        release = [line.split(',') for line in case['class_names']]
        release = [[n.strip() for n in names] for names in release]
        assert ours == [release[BACKGROUND]] + release[:BACKGROUND]
    assert DATASETS.get('PascalVOCDataset').METAINFO['classes'][1:] == \
        tuple(names[0] for names in ours[1:])[:19] + ('tvmonitor',)


def crop_votes_by_hand(seg, image, crop, stride, ori_shape):
    """Each window's own labels (the encoder on that crop alone), one-hot, averaged over
    the windows covering each pixel, resized bilinearly to the output size."""
    height, width = image.shape[-2:]
    total = image.new_zeros((seg.num_classes, height, width))
    count = image.new_zeros((1, height, width))
    for i in range(max(height - crop + stride - 1, 0) // stride + 1):
        for j in range(max(width - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(i * stride + crop, height), min(j * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            labels = seg.encoder(image[None, :, y1:y2, x1:x2]).labels[0]
            total[:, y1:y2, x1:x2] += F.one_hot(labels, seg.num_classes).permute(2, 0, 1)
            count[:, y1:y2, x1:x2] += 1
    return F.interpolate((total / count)[None], size=ori_shape, mode='bilinear',
                         align_corners=False)[0]


def batch_images():
    """Three real images: two of one size (two windows each) and one of another."""
    a = GOLDEN.image_input('voc21_336/0/resized')
    b = GOLDEN.image_input('voc21_336/1/resized')
    return [a[:, :224, :280], b[:, :224, :280], b[:, 30:250, 10:260]]


def test_windows_count_each_windows_vote(case_segmentors):
    seg = case_segmentors('voc21_224')
    image = batch_images()[2]
    ori_shape = (263, 301)
    expected = crop_votes_by_hand(seg, image, 224, 112, ori_shape)
    result = seg.predict(image[None], [SegDataSample(metainfo=dict(ori_shape=ori_shape))])[0]
    assert (result.seg_logits.data - expected).abs().max() <= 1e-12
    assert torch.equal(result.pred_sem_seg.data[0], expected.argmax(0))
    # Windows disagree somewhere: the vote is not one window's.
    assert ((expected > 0) & (expected < 1)).any()


def test_batched_prediction_equals_single_images(case_segmentors):
    """Windows of 224 / 112, the crops of all images encoded together."""
    seg = case_segmentors('voc21_224')
    images = batch_images()
    shapes = [(250, 310), (224, 280), (200, 260)]
    assert_batch_equals_single(seg, images, shapes)


def last_block_by_hand(block, tokens):
    """CLIPtrase's last block written out, one head at a time: softmax(s q q^T) +
    softmax(s k k^T) + softmax(s v v^T) applied to v, out_proj, residual, MLP."""
    hidden = block.ln_1(tokens)[0]
    width = hidden.shape[-1]
    heads, d = block.attn.num_heads, width // block.attn.num_heads
    projected = hidden @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias
    q, k, v = projected.split(width, dim=-1)
    outputs = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        weights = sum(torch.softmax(a[:, part] @ a[:, part].t() / d ** 0.5, dim=-1)
                      for a in (q, k, v))
        outputs.append(weights @ v[:, part])
    x = tokens + block.attn.out_proj(torch.cat(outputs, dim=-1))[None]
    return x + block.mlp(block.ln_2(x))


def test_purification_by_hand(case_segmentors):
    """purify: block 11's two largest-norm patches replaced by the mean of their grid
    neighbours before the last block; the correlation (inside block 11) is unchanged."""
    seg = case_segmentors('voc21_224')
    visual = seg.encoder.visual
    purifying = ENCODERS.build(dict(type='cliptrase', visual=visual,
                                    query_features=seg.query_features,
                                    query_idx=seg.query_idx,
                                    detector=dict(type='L2', num_outliers=2)))
    x = GOLDEN.image_input('voc21_224/0/resized')[None]
    tokens = visual.embed(x)
    for block in visual.blocks[:-1]:
        tokens = block(tokens)
    norms = tokens[0, 1:].norm(dim=-1)
    grid = tokens[0, 1:].view(14, 14, -1)
    purified = tokens.clone()
    for index in norms.topk(2).indices.tolist():
        r, c = divmod(index, 14)
        ring = [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                if (dr, dc) != (0, 0) and 0 <= r + dr < 14 and 0 <= c + dc < 14
                and (r + dr) * 14 + c + dc not in norms.topk(2).indices.tolist()]
        purified[0, 1 + index] = torch.stack([grid[p] for p in ring]).mean(0)
    expected = visual.project(last_block_by_hand(visual.blocks[-1], purified))[:, 1:]
    walk = purifying.walk(x)
    out = purifying(x)
    assert sorted(walk.outliers.positions(0)) == sorted(divmod(i, 14)
                                                        for i in norms.topk(2).indices.tolist())
    assert (out.features - expected).abs().max() <= 1e-12
    plain = seg.encoder.walk(x)
    assert torch.equal(purifying.correlation(walk), seg.encoder.correlation(plain))
    assert (seg.encoder(x).features - out.features).abs().max() > 1e-3
    assert out.labels.shape == (1, 224, 224)


def test_purify_through_the_segmentor(case_segmentors):
    model = Config.fromfile(str(CONFIG)).model
    model.update(clip_path=str(TINY_CKPT), device='cpu', precision='fp64', purify=True,
                 pm='SOM', templates=['a photo of a {}.'])
    seg = MODELS.build(model)
    assert seg.encoder.detector is not None and seg.encoder.decides_labels
    image = batch_images()[0][:, :, :224]
    result = seg.predict(image[None])[0]
    assert result.pred_sem_seg.data.shape == (1, 224, 224)
    assert len(seg.encoder.walk(image[None]).outliers.positions(0)) > 0


def test_vote_by_hand():
    labels = torch.tensor([[0, 3, 3, 1],
                           [0, 0, 3, 1],
                           [2, 2, 2, 2]])
    regions = torch.tensor([[0, 0, 0, 1],
                            [0, 0, 0, 1],
                            [2, 2, 1, 1]])
    # Region 0 ties 0 against 3 (three pixels each), region 1 holds 1, 1, 2, 2.
    assert torch.equal(vote_in_regions(labels, regions, 4),
                       torch.tensor([[0, 0, 0, 1], [0, 0, 0, 1], [2, 2, 1, 1]]))
    background_last = torch.tensor([1, 2, 3, 0])
    assert torch.equal(vote_in_regions(labels, regions, 4, background_last),
                       torch.tensor([[3, 3, 3, 1], [3, 3, 3, 1], [2, 2, 1, 1]]))


def test_cls_logit_product_and_no_vote(case_segmentors):
    seg = case_segmentors('voc21_224')
    common = dict(type='cliptrase', visual=seg.encoder.visual,
                  query_features=seg.query_features, query_idx=seg.query_idx)
    x = GOLDEN.image_input('voc21_224/1/resized')[None, :, :160, :192]
    tokens = seg.encoder.tokens(seg.encoder.walk(x))[0]
    patches = F.normalize(tokens[1:], dim=-1) @ seg.query_features.t()  # (N, Q)
    cls = F.normalize(tokens[0], dim=-1) @ seg.query_features.t()  # (Q,)
    product = ENCODERS.build(dict(common, cls_logit_product=True))(x)
    assert (product.logits[0] - (patches * cls).t().reshape(-1, 10, 12)).abs().max() <= 1e-12
    plain = ENCODERS.build(dict(common, vote=False))
    assert not plain.decides_labels and plain(x).labels is None


def test_clear_errors(case_segmentors):
    model = Config.fromfile(str(CONFIG)).model
    model.update(clip_path=str(TINY_CKPT), device='cpu', templates=['{}'], pamr_steps=10)
    with pytest.raises(ValueError, match='pamr_steps = 10: PAMR refines logits, but '
                                         'CLIPtraseEncoder decides the labels itself'):
        MODELS.build(model)
    seg = case_segmentors('voc21_224')
    with pytest.raises(ValueError, match='background_class = 21: the vocabulary has classes '
                                         '0 to 20'):
        ENCODERS.build(dict(type='cliptrase', visual=seg.encoder.visual,
                            query_features=seg.query_features, query_idx=seg.query_idx,
                            background_class=21))
    with pytest.raises(ValueError, match='CorrelationRegions needs eps > 0'):
        ENCODERS.build(dict(type='cliptrase', visual=seg.encoder.visual,
                            query_features=seg.query_features, query_idx=seg.query_idx,
                            dbscan_eps=0))


BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')
RELEASE = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
           'ade20k')  # the release has no Cityscapes
CONFIGS = sorted(glob.glob(str(REPO / 'configs' / 'cliptrase' / '*.py')))


def test_configs_are_the_benchmarks_in_windows_and_the_releases_protocol():
    names = {p.split('/')[-1][:-3] for p in CONFIGS}
    assert names == ({f'cliptrase_vit-b16_{b}' for b in BENCHMARKS}
                     | {f'cliptrase_vit-b16_{b}_release{s}' for b in RELEASE for s in (224, 336)})


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.split('/')[-1][:-3])
def test_every_config_builds_and_segments_an_image(path):
    cfg = Config.fromfile(path)
    name = path.split('/')[-1][:-3]
    benchmark = name.split('cliptrase_vit-b16_')[1].split('_release')[0]
    encoder = cfg.model.encoder
    assert encoder.cls_logit_product == (benchmark == 'voc20')
    assert encoder.background_class == (0 if benchmark in RELEASE[:3] else None)
    size = int(name[-3:]) if '_release' in name else None
    assert (encoder.dbscan_eps, encoder.dbscan_min_samples) == \
        ((1.1, 7) if size == 336 else (0.7, 3))
    steps = [step.type for step in cfg.test_dataloader.dataset.pipeline]
    if size:
        crop = cfg.test_dataloader.dataset.pipeline[2]
        assert steps == ['LoadImageFromFile', 'LoadAnnotations', 'ResizeCenterCrop',
                         'PackSegInputs'] and crop.size == size and cfg.model.slide_crop == 0
        assert crop.get('ignore_to') == (0 if benchmark in RELEASE[:3] else None)
        assert np.allclose(cfg.model.data_preprocessor.mean, 255 * MEAN.flatten().numpy())
        assert np.allclose(cfg.model.data_preprocessor.std, 255 * STD.flatten().numpy())
    else:
        assert steps[1] == 'Resize' and cfg.model.slide_crop == 224
    cfg.model.update(clip_path=str(TINY_CKPT), device='cpu', templates=['{}'])
    seg = MODELS.build(cfg.model)
    assert type(seg.encoder) is ENCODERS.get('cliptrase')
    assert seg.num_classes == len(DATASETS.get(cfg.test_dataloader.dataset.type)
                                  .METAINFO['classes'])
    image = GOLDEN.image_input('voc21_224/1/resized')[:, :96, :128].float()
    result = seg.predict(image[None], [SegDataSample(metainfo=dict(ori_shape=(90, 120)))])[0]
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, 90, 120) and labels.min() >= 0 and labels.max() < seg.num_classes


def test_centre_crop_is_the_releases():
    """ResizeCenterCrop on the ADE20K image of the goldens gives the release's S x S crops
    (Pillow bicubic, Python rounding: (307 - 224) / 2 = 41.5 starts at 42); labels go by
    Pillow's nearest rule, written out here: source index floor((i + 0.5) * in / out)."""
    folder = FIXTURES / 'data' / 'ADEChallengeData2016'
    for name in CASES:
        case = GOLDEN.cases[CASES.index(name)]
        index = [i['file'] for i in case['images']].index(
            'ade20k_val_sample/ADEChallengeData2016/images/validation/ADE_val_00000002.jpg')
        size = case['params']['image_size']
        results = LoadImageChecked().transform(dict(
            img_path=str(folder / 'images' / 'validation' / 'ADE_val_00000002.jpg')))
        label = np.asarray(Image.open(folder / 'annotations' / 'validation' /
                                      'ADE_val_00000002.png'))
        results.update(gt_seg_map=label.copy(), seg_fields=['gt_seg_map'])
        height, width = label.shape
        out = ResizeCenterCrop(size).transform(results)
        np.testing.assert_array_equal(out['img'].transpose(2, 0, 1),
                                      GOLDEN.arrays[f'{name}/{index}/resized'])
        resized_h, resized_w, top, left = case['images'][index]['crop_box']
        rows = np.floor((np.arange(resized_h) + 0.5) * height / resized_h).astype(int)
        cols = np.floor((np.arange(resized_w) + 0.5) * width / resized_w).astype(int)
        expected = label[rows][:, cols][top:top + size, left:left + size]
        np.testing.assert_array_equal(out['gt_seg_map'], expected)
        assert out['ori_shape'] == out['img_shape'] == (size, size)


def test_centre_crop_counts_ignored_pixels_as_background_unless_all_are():
    image = np.zeros((250, 300, 3), np.uint8)
    label = np.full((250, 300), 255, np.uint8)
    label[100:150, 100:200] = 7
    out = ResizeCenterCrop(224, ignore_to=0).transform(dict(
        img=image.copy(), gt_seg_map=label.copy(), seg_fields=['gt_seg_map']))
    assert set(np.unique(out['gt_seg_map'])) == {0, 7}
    out = ResizeCenterCrop(224, ignore_to=0).transform(dict(
        img=image.copy(), gt_seg_map=np.full((250, 300), 255, np.uint8),
        seg_fields=['gt_seg_map']))
    assert (out['gt_seg_map'] == 255).all()
    with pytest.raises(ValueError, match='ResizeCenterCrop resizes uint8 images'):
        ResizeCenterCrop(224).transform(dict(img=image.astype(np.float32), seg_fields=[]))


def test_release_config_pipeline_gives_the_square_and_its_labels():
    """mmseg's dataset with the release config's pipeline: image, labels and the shapes the
    prediction and the metric use are the 224 x 224 square."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(REPO / 'configs' / 'cliptrase' /
                              'cliptrase_vit-b16_ade20k_release224.py'))
    cfg.test_dataloader.dataset.data_root = str(FIXTURES / 'data' / 'ADEChallengeData2016')
    item = DATASETS.build(cfg.test_dataloader.dataset)[1]
    sample = item['data_samples']
    assert item['inputs'].shape == (3, 224, 224)
    assert sample.ori_shape == sample.img_shape == (224, 224)
    assert sample.gt_sem_seg.data.shape == (1, 224, 224)
    np.testing.assert_array_equal(item['inputs'].numpy(),
                                  GOLDEN.arrays['voc21_224/1/resized'])
