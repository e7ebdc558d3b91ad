"""The analysis API against the encoders it describes, and each method's last-block
attention against the formula computed here from the visual tower's own weights."""
import numpy as np
import pytest
import torch

from sfp.analysis import analyze_image, center_crop, compare_last_block_attention
from sfp.datasets import read_image

from .conftest import REPO, TINY_CKPT

IMAGE = REPO / 'demo' / 'images' / '000000214753.jpg'
METHODS = ('sfp', 'clip', 'maskclip', 'clearclip', 'sclip', 'naclip', 'scclip', 'cliptrase',
           'resclip')


@pytest.fixture(scope='module')
def image():
    return read_image(IMAGE)


@pytest.fixture(scope='module')
def analysis(make_segmentor, image):
    seg = make_segmentor(pm='SOM', precision='fp64')
    return seg, analyze_image(seg, image)


@pytest.fixture(scope='module')
def comparison(image):
    return compare_last_block_attention(METHODS, image, clip_path=str(TINY_CKPT),
                                        device='cpu', precision='fp64')


def clip_input(image) -> torch.Tensor:
    """(1, 3, 224, 224) float64 CLIP-normalised RGB central crop, as the analysis takes it."""
    from sfp.apis import prepare_image
    from sfp.models.data_preprocessor import CLIP_MEAN, CLIP_STD
    crop = center_crop(prepare_image(image), 224).flip(0).double()
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))
    return ((crop - mean) / std)[None]


def test_shapes_and_contents(analysis, image):
    seg, result = analysis
    walked = seg.encoder.visual.num_blocks - 1
    assert result.crop.shape == (224, 224, 3) and result.grid == (14, 14)
    assert result.cls_attention.shape == (walked, 14, 14)
    assert result.token_norms.shape == (walked, 14, 14)
    assert result.labels.shape == image.shape[:2]
    assert set(result.outliers) == {'SOM', 'L2', 'LOF', 'DBSCAN', 'KMeans', 'cls_attn'}
    assert result.class_names[1] == 'aeroplane' and result.detect_block == 11
    # CLS attention rows are probabilities over CLS + patches.
    assert (result.cls_attention.sum(dim=(1, 2)) <= 1 + 1e-6).all()
    # SFP's last block attends over the patches only.
    assert result.last_block.weights.shape[1:] == (196, 196) and not result.last_block.has_cls


def test_walk_and_outliers_match_the_encoder(analysis, image):
    seg, result = analysis
    x = clip_input(image)
    visual = seg.encoder.visual
    tokens = visual.embed(x)
    for index, block in enumerate(visual.blocks[:-1]):
        tokens, attention = block.forward_with_weights(tokens)
        assert torch.allclose(result.cls_attention[index],
                              attention.mean(1)[0, 0, 1:].view(14, 14).float())
        assert torch.allclose(result.token_norms[index],
                              tokens[0, 1:].norm(dim=-1).view(14, 14).float())
    out = seg.encoder(x)
    assert result.outliers['SOM'] == out.outliers.positions(0)
    row, col = result.outliers['SOM'][0]
    raw, purified = result.similarity_map(row, col, False), result.similarity_map(row, col)
    assert raw.shape == (14, 14)
    # The guidance block's tokens, purified by hand: each outlier becomes the mean of its
    # clean 8-neighbours (zero without one); the similarity is the thresholded cosine.
    tokens = visual.embed(x)
    for block in visual.blocks[:seg.encoder.pre_guidance_block]:
        tokens = block(tokens)
    grid = tokens[0, 1:].view(14, 14, -1)
    outliers = set(result.outliers['SOM'])
    hand = grid.clone()
    for r, c in outliers:
        clean = [grid[r + dr, c + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                 if (dr, dc) != (0, 0) and 0 <= r + dr < 14 and 0 <= c + dc < 14
                 and (r + dr, c + dc) not in outliers]
        hand[r, c] = torch.stack(clean).mean(0) if clean else 0
    for source, similarity in ((grid, result.similarity_raw),
                               (hand, result.similarity_purified)):
        unit = torch.nn.functional.normalize(source.reshape(196, -1), dim=-1)
        cosine = unit @ unit.t()
        expected = torch.where(cosine >= seg.encoder.similarity_threshold, cosine, 0)
        assert torch.allclose(similarity.double(), expected, atol=1e-6)
    assert not torch.equal(raw, purified)
    # Every (non-zero) token is fully similar to itself, before and after purification.
    assert torch.allclose(result.similarity_purified.diagonal(), torch.ones(196))
    assert np.isclose(float(result.similarity_raw.diagonal().min()), 1.0)


def test_analysis_honours_stream_mitigation(make_segmentor, analysis, image):
    """With in-stream purification after block 6, blocks 1..6 are unchanged and every later
    block sees purified tokens; the outliers are still the encoder's own."""
    _, plain = analysis
    seg = make_segmentor(pm='SOM', precision='fp64',
                         encoder_cfg=dict(stream_mitigation_blocks=(6,)))
    result = analyze_image(seg, image)
    assert torch.equal(result.cls_attention[:6], plain.cls_attention[:6])
    assert torch.equal(result.token_norms[:6], plain.token_norms[:6])
    for index in range(6, len(result.cls_attention)):
        assert not torch.allclose(result.token_norms[index], plain.token_norms[index])
    assert result.outliers['SOM'] == seg.encoder(clip_input(image)).outliers.positions(0)


def plain_clip_last_block_qkv(visual, x):
    """q, k, v (1, heads, 1 + N, d) of the last block on plain CLIP's block-11 output, from
    the packed in_proj weights."""
    tokens = visual.embed(x)
    for block in visual.blocks[:-1]:
        tokens = block(tokens)
    block = visual.blocks[-1]
    hidden = block.ln_1(tokens)
    width, heads = hidden.shape[-1], block.attn.num_heads
    qkv = hidden @ block.attn.in_proj_weight.T + block.attn.in_proj_bias
    return tuple(t.view(1, -1, heads, width // heads).transpose(1, 2)
                 for t in qkv.split(width, dim=-1))


def softmax_logits(a, b, bias=0.0):
    return torch.softmax(a @ b.transpose(-2, -1) / a.shape[-1] ** 0.5 + bias, dim=-1)


def test_last_block_attention_of_each_method(comparison, image):
    from sfp.clip import load
    visual = load(str(TINY_CKPT), precision='fp64').visual
    q, k, v = plain_clip_last_block_qkv(visual, clip_input(image))
    tokens = q.shape[2]
    rows, cols = torch.meshgrid(torch.arange(14.), torch.arange(14.), indexing='ij')
    rows, cols = rows.flatten().double(), cols.flatten().double()
    distance2 = (rows[:, None] - rows) ** 2 + (cols[:, None] - cols) ** 2
    bias = torch.zeros(tokens, tokens, dtype=torch.float64)
    bias[1:, 1:] = torch.exp(-distance2 / (2 * 5.0 ** 2))  # NACLIP's std of 5 patches
    expected = dict(
        clip=softmax_logits(q, k)[0],
        clearclip=softmax_logits(q, q)[0],
        sclip=(softmax_logits(q, q) + softmax_logits(k, k))[0],
        cliptrase=(softmax_logits(q, q) + softmax_logits(k, k) + softmax_logits(v, v))[0],
        naclip=softmax_logits(k, k, bias)[0],
        maskclip=torch.eye(tokens, dtype=torch.float64).expand(q.shape[1], -1, -1))
    methods = comparison.methods
    assert list(methods) == list(METHODS) and comparison.grid == (14, 14)
    for name, weights in expected.items():
        assert methods[name].has_cls
        assert torch.allclose(methods[name].weights, weights.float(), rtol=0, atol=1e-6), name
    for name, total in (('sclip', 2.), ('cliptrase', 3.)):  # rows: softmaxes summed
        rows = methods[name].weights.sum(-1)
        assert torch.allclose(rows, torch.full((q.shape[1], tokens), total))
    assert not torch.allclose(methods['naclip'].weights, softmax_logits(k, k)[0].float())
    # ResCLIP's second pass (tests/test_resclip.py: the weights its last block applies):
    # tau_r (1 - lam_r) softmax + tau_r lam_r R, rows summing to tau_r = 2.
    assert methods['resclip'].has_cls
    assert torch.allclose(methods['resclip'].weights.sum(-1), torch.full((q.shape[1], tokens), 2.))
    maps = comparison.query_maps(7, 7)
    assert set(maps) == set(METHODS) and all(m.shape == (14, 14) for m in maps.values())
    assert torch.equal(maps['maskclip'], torch.eye(196)[7 * 14 + 7].view(14, 14))
    assert torch.allclose(maps['clip'], expected['clip'].mean(0)[1 + 7 * 14 + 7, 1:]
                          .view(14, 14).float())


@pytest.mark.parametrize('method', ['sfp', 'scclip'])
def test_enhancer_attention_is_what_the_last_block_applies(comparison, image, method):
    """SFP's rebuilt and SC-CLIP's guided attention: the weights read out are the ones the
    enhancer applies, i.e. its output is out_proj(W V) + res_cls * CLS with the V of its
    own input, for every patch."""
    from sfp.analysis import method_segmentors
    from sfp.models import SemanticAwareAttentionEnhancer
    seg = method_segmentors([method], clip_path=str(TINY_CKPT), device='cpu',
                            precision='fp64')[method]
    enhancer = next(m for m in seg.encoder.modules()
                    if isinstance(m, SemanticAwareAttentionEnhancer))
    calls = []
    handle = enhancer.register_forward_hook(lambda m, args, out: calls.append((args, out)))
    try:
        seg.encoder(clip_input(image))
    finally:
        handle.remove()
    (block, patches, cls, _), output = calls[0]
    weights = comparison.methods[method].weights.double()  # (heads, N, N)
    assert weights.shape[1:] == (196, 196) and (weights >= 0).all()
    assert (weights.sum(-1) <= 1 + 1e-6).all()
    v = block.attn.project_v(block.ln_1(patches))
    rebuilt = block.attn.merge_heads(weights[None] @ v) + enhancer.cls_residual * cls
    assert torch.allclose(rebuilt, output, rtol=0, atol=1e-5)


def test_value_value_enhancer_is_refused(make_segmentor, image):
    """softmax(V V^T) V is not linear in V: its weights cannot be read with V = I."""
    from sfp.analysis import last_block_attention
    seg = make_segmentor(encoder_cfg=dict(enhancer=dict(terms=('vv', 'guidance'))),
                         templates=['{}'])
    walk = seg.encoder.walk(clip_input(image).double())
    with pytest.raises(ValueError, match="'vv' term weighs its values by their own"):
        last_block_attention(seg.encoder, walk)
