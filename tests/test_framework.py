"""The framework: a new method in a few lines, purification as a plug-in for every method
(against hand-computed expectations on a crafted input), parts from config dicts, every
config of the baselines, and clear errors."""
import glob

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS
from torch import nn

import sfp
from sfp import clip
from sfp.models import (
    LastBlockAttentionEncoder,
    NeighbourMeanMitigation,
    SemanticAwareAttentionEnhancer,
    build_detector,
    mitigate_outliers,
)
from sfp.registry import ENCODERS

from .conftest import CLASSNAMES, REPO, TINY_CKPT

BASELINES = ('clip', 'maskclip', 'clearclip', 'sclip', 'naclip', 'scclip', 'resclip')
METHODS = BASELINES + ('sfp',)


@ENCODERS.register_module(name='VVAttentionEncoder')
class VVAttentionEncoder(LastBlockAttentionEncoder):
    """An imaginary method: v-v attention in the last block, no residual, no FFN."""

    def attention(self, block, hidden, grid):
        _, _, v = block.attn.project_qkv(hidden)
        return F.scaled_dot_product_attention(v, v, v)


@pytest.fixture
def visual():
    return clip.load(TINY_CKPT, precision='fp64').visual


def self_attention_by_hand(block, tokens, key):
    """out_proj(concat_h softmax(a_h a_h^T / sqrt(d)) v_h) of ln_1(tokens), with a the
    queries, keys or values (``key`` 0, 1 or 2): the formula written out, one head at a
    time."""
    hidden = block.ln_1(tokens)[0]  # (T, C)
    width = hidden.shape[-1]
    heads, d = block.attn.num_heads, width // block.attn.num_heads
    projected = hidden @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias
    a, v = projected[:, key * width:(key + 1) * width], projected[:, 2 * width:]
    outputs = []
    for h in range(heads):
        ah, vh = a[:, h * d:(h + 1) * d], v[:, h * d:(h + 1) * d]
        outputs.append(torch.softmax(ah @ ah.t() / d ** 0.5, dim=-1) @ vh)
    return block.attn.out_proj(torch.cat(outputs, dim=-1))[None]


def test_a_new_method_is_one_class_and_one_registry_entry(golden):
    seg = sfp.SFPSegmentor(str(TINY_CKPT), str(CLASSNAMES / 'cls_voc21.txt'), device='cpu',
                           precision='fp64', encoder=dict(type='VVAttentionEncoder'),
                           templates=['a photo of a {}.'], slide_crop=0)
    image = golden.image_input(0)[:, :160, :208].double()  # a 10 x 13 grid
    visual = seg.encoder.visual
    tokens = visual.embed(image[None])
    for block in visual.blocks[:-1]:
        tokens = block(tokens)
    features = visual.project(self_attention_by_hand(visual.blocks[-1], tokens, key=2)[:, 1:])
    assert (seg.encoder(image[None]).features - features).abs().max() <= 1e-12
    grid = (F.normalize(features[0], dim=-1) @ seg.query_features.t()).t().reshape(-1, 10, 13)
    expected = F.interpolate(grid[None], size=(200, 260), mode='bilinear',
                             align_corners=False)[0]
    logits = seg.inference(image[None], [dict(ori_shape=(200, 260))])[0]
    assert (logits - expected).abs().max() <= 1e-12
    assert seg.predict(image[None])[0].pred_sem_seg.data.shape == (1, 160, 208)


class PlantedBlock(nn.Module):
    """Stands in for block L-1: outputs fixed tokens whatever it is given."""

    def __init__(self, tokens):
        super().__init__()
        self.tokens = tokens

    def forward(self, x):
        return self.tokens.expand(x.shape[0], -1, -1)


ROWS = COLS = 14
OUTLIERS = [(0, 13), (5, 7)]  # a corner (3 neighbours) and an inner patch (8)


def crafted_tokens(width=128):
    """CLS + 14 x 14 smoothly varying patch tokens with two huge ones at OUTLIERS, and
    the same tokens purified by hand: each outlier the mean of its grid neighbours."""
    gen = torch.Generator().manual_seed(0)
    base, down, right = torch.randn(3, width, generator=gen, dtype=torch.float64)
    grid = [[base + 0.1 * r * down + 0.05 * c * right for c in range(COLS)] for r in range(ROWS)]
    purified = [[grid[r][c] for c in range(COLS)] for r in range(ROWS)]
    for r, c in OUTLIERS:
        grid[r][c] = 40 * torch.randn(width, generator=gen, dtype=torch.float64)
    for r, c in OUTLIERS:
        ring = [grid[r + dr][c + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                if (dr, dc) != (0, 0) and 0 <= r + dr < ROWS and 0 <= c + dc < COLS]
        purified[r][c] = sum(ring) / len(ring)
    cls = torch.randn(1, width, generator=gen, dtype=torch.float64)

    def stack(rows):
        return torch.cat([cls, torch.stack([t for row in rows for t in row])])[None]

    return stack(grid), stack(purified)


def build_encoder(method, visual, **kwargs):
    """A method's encoder on ``visual``; one that reads the vocabulary (ResCLIP) gets four
    random unit query features."""
    if ENCODERS.get(method).uses_vocabulary:
        gen = torch.Generator().manual_seed(0)
        kwargs['query_features'] = F.normalize(
            torch.randn(4, visual.output_dim, generator=gen, dtype=torch.float64), dim=-1)
    return ENCODERS.build(dict(type=method, visual=visual, **kwargs))


@pytest.mark.parametrize('method', BASELINES)
def test_purification_plug_in_on_a_crafted_input(visual, golden, method):
    """With purify, a method sees block L-1's output with each outlier replaced by the mean
    of its neighbours, and is otherwise unchanged: the same as feeding it the tokens
    purified by hand.  (SFP also mitigates its block-9 guidance: its own goldens.)"""
    tokens, purified = crafted_tokens(visual.width)
    images = golden.image_input(0)[None, :, :224, :224].double()
    visual.blocks[visual.num_blocks - 2] = PlantedBlock(tokens)
    purifying = build_encoder(method, visual, detector=dict(type='L2', num_outliers=2))
    walk = purifying.walk(images)
    assert sorted(walk.outliers.positions(0)) == OUTLIERS
    assert (walk.tokens - purified).abs().max() <= 1e-12
    assert torch.equal(walk.tokens[:, 0], tokens[:, 0])  # CLS untouched
    out = purifying(images)

    visual.blocks[visual.num_blocks - 2] = PlantedBlock(purified)
    by_hand = build_encoder(method, visual, detector=None)(images)
    assert by_hand.outliers is None
    assert (out.features - by_hand.features).abs().max() <= 1e-12
    visual.blocks[visual.num_blocks - 2] = PlantedBlock(tokens)
    unpurified = build_encoder(method, visual)(images)
    assert (out.features - unpurified.features).abs().max() > 1e-3


def test_clearclip_on_hand_purified_tokens_by_formula(visual, golden):
    tokens, purified = crafted_tokens(visual.width)
    visual.blocks[visual.num_blocks - 2] = PlantedBlock(tokens)
    encoder = ENCODERS.build(dict(type='clearclip', visual=visual,
                                  detector=dict(type='L2', num_outliers=2)))
    images = golden.image_input(0)[None, :, :224, :224].double()
    expected = visual.project(self_attention_by_hand(visual.blocks[-1], purified, key=0)[:, 1:])
    assert (encoder(images).features - expected).abs().max() <= 1e-12


@pytest.mark.parametrize('method,pm', [('sclip', 'SOM'), ('naclip', 'LOF'), ('scclip', 'L2'),
                                       ('clip', 'SOM')])
def test_purification_plug_in_with_real_detectors(make_segmentor, golden, method, pm):
    """Through the segmentor: the detector reads block L-1's output (and attention) as
    computed block by block here, and the method gets those tokens mitigated."""
    seg = make_segmentor(encoder=dict(type=method), purify=True, pm=pm, templates=['{}'])
    assert seg.encoder.detector is not None
    images = golden.image_input(1)[None, :, :224, :224].double()
    visual = seg.encoder.visual
    tokens = visual.embed(images)
    for block in visual.blocks[:-2]:
        tokens = block(tokens)
    tokens, attention = visual.blocks[-2].forward_with_weights(tokens)
    expected = build_detector(pm)(tokens, attention, (14, 14))
    walk = seg.encoder.walk(images)
    assert walk.outliers.positions(0) == expected.positions(0)
    mitigated = mitigate_outliers(tokens[:, 1:], expected.mask(), (14, 14))
    assert (walk.tokens[:, 1:] - mitigated).abs().max() <= 1e-12


def test_purify_defaults_follow_the_method(make_segmentor):
    assert make_segmentor(encoder=dict(type='sclip'), templates=['{}']).encoder.detector is None
    assert make_segmentor(templates=['{}']).encoder.detector is not None  # SFP
    assert make_segmentor(purify=False, templates=['{}']).encoder.detector is None


def test_encoder_parts_from_config_dicts(golden, make_segmentor):
    """Parts given as dicts are built (they used to fail at predict time), and equal
    the defaults when they say the same."""
    default = make_segmentor(pm='SOM')
    from_dicts = make_segmentor(pm='SOM', encoder_cfg=dict(
        enhancer=dict(cls_residual=0.3), integrator=dict(type='HierarchicalIntegrator',
                                                         blocks=(4, 10)),
        mitigation=dict(type='NeighbourMeanMitigation'), detector=dict(type='SOM')))
    assert isinstance(from_dicts.encoder.enhancer, SemanticAwareAttentionEnhancer)
    assert isinstance(from_dicts.encoder.mitigation, NeighbourMeanMitigation)
    x = golden.image_input(0)[None].double()
    meta = [dict(ori_shape=tuple(golden.meta['images'][0]['ori_shape']))]
    assert torch.equal(default.inference(x, meta)[0], from_dicts.inference(x, meta)[0])


def test_sfp_is_a_method_like_the_others(make_segmentor):
    built = make_segmentor(pm='SOM', encoder=dict(type='sfp'))
    default = make_segmentor(pm='SOM')
    assert type(built.encoder) is type(default.encoder) is ENCODERS.get('SFPEncoder')
    assert built.encoder.integrator.blocks == (4, 10)
    assert MODELS.get('OpenVocabularySegmentor') is sfp.SFPSegmentor


def test_registry_names():
    for name in METHODS:
        cls = ENCODERS.get(name)
        assert cls is not None and ENCODERS.get(cls.__name__) is cls


CONFIGS = sorted(p for method in BASELINES
                 for p in glob.glob(str(REPO / 'configs' / method / '*_vit-b16_*.py')))


def test_every_baseline_has_all_eight_benchmarks():
    benchmarks = {'voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
                  'cityscapes', 'ade20k'}
    for method in BASELINES:
        found = {p.split(f'{method}_vit-b16_')[-1][:-3] for p in CONFIGS
                 if p.split('/')[-2] == method}
        assert found == benchmarks, method


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.split('/')[-1][:-3])
def test_config_builds_with_the_datasets_classes(path):
    cfg = Config.fromfile(path)
    method = path.split('/')[-2]
    keys = set(Config.fromfile(str(REPO / 'configs' / 'sfp' / 'sfp_vit-b16_voc21.py')).model)
    assert keys - {'res_cls', 'cross_s', 'cross_e'} <= set(cfg.model)
    cfg.model.update(clip_path=str(TINY_CKPT), device='cpu', templates=['{}'])
    seg = MODELS.build(cfg.model)
    assert type(seg.encoder) is ENCODERS.get(method)
    dataset = DATASETS.get(cfg.test_dataloader.dataset.type)
    assert seg.num_classes == len(dataset.METAINFO['classes'])


@pytest.mark.parametrize('kwargs,message', [
    (dict(encoder=dict(type='GEM')), "unknown encoder type 'GEM'; choose from .*naclip"),
    (dict(encoder='naclip'), 'encoder must be a config dict with a "type"'),
    (dict(encoder=dict(type='naclip', sigma=3)), "bad arguments for encoder 'naclip'"),
    (dict(encoder_cfg=dict(enhancer=dict(type='Sharpener'))),
     "unknown encoder part type 'Sharpener'"),
    (dict(encoder_cfg=dict(enhancer=dict(terms=('qk',)))), 'enhancer terms must be'),
    (dict(encoder=dict(type='scclip', guidance_block=12)),
     'guidance_block = 12: must be a block from 1 to 11'),
])
def test_bad_encoder_arguments_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sfp.SFPSegmentor(str(TINY_CKPT), str(CLASSNAMES / 'cls_voc21.txt'), device='cpu',
                         templates=['{}'], **kwargs)
