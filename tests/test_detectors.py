"""The detector family on planted outliers, and the paper's variants as options."""
import numpy as np
import pytest
import torch

from sfp.models import build_detector
from sfp.registry import OUTLIER_DETECTORS

PLANTED = [(0, 3), (5, 7), (9, 11)]
ROWS, COLS = 10, 12


def planted_tokens(batch=2, dim=32, seed=0):
    """Patch tokens in 3 tight clusters (directions) plus 3 tokens pointing elsewhere,
    with large norms, at PLANTED."""
    gen = torch.Generator().manual_seed(seed)
    n = ROWS * COLS
    centres = torch.randn(3, dim, generator=gen)
    tokens = torch.zeros(batch, 1 + n, dim)
    for b in range(batch):
        tokens[b, 1:] = centres[torch.arange(n) % 3] + 0.2 * torch.randn(n, dim, generator=gen)
        for r, c in PLANTED:
            tokens[b, 1 + r * COLS + c] = 3 * torch.randn(dim, generator=gen)
    return tokens


def planted_attention(batch=2, heads=3):
    """CLS attends strongly to PLANTED (1.5 x 0.3 > 0.2 self-attention: SOM candidates
    there only); every patch attends mostly to itself."""
    n = ROWS * COLS
    attn = torch.full((batch, heads, 1 + n, 1 + n), 0.1 / n)
    attn[:, :, 1:, 1:] += 0.2 * torch.eye(n)
    for r, c in PLANTED:
        attn[:, :, 0, 1 + r * COLS + c] = 0.3
    return attn


def test_registry_holds_the_family():
    assert {'SOM', 'L2', 'LOF', 'DBSCAN', 'KMeans', 'cls_attn'} <= set(
        OUTLIER_DETECTORS.module_dict)


@pytest.mark.parametrize('cfg', ['DBSCAN', 'KMeans', dict(type='L2', num_outliers='auto'),
                                 dict(type='LOF', contamination=0.025)])
def test_token_detectors_find_planted_outliers(cfg):
    tokens = planted_tokens()
    found = build_detector(cfg)(tokens, None, (ROWS, COLS))
    for b in range(2):
        assert sorted(found.positions(b)) == PLANTED


@pytest.mark.parametrize('cfg', ['cls_attn', dict(type='cls_attn', num_outliers='auto'),
                                 'SOM', dict(type='SOM', num_outliers='auto')])
def test_attention_detectors_find_planted_outliers(cfg):
    detector = build_detector(cfg)
    assert detector.needs_attention
    found = detector(planted_tokens(), planted_attention(), (ROWS, COLS))
    expected = PLANTED if cfg != 'cls_attn' else None
    for b in range(2):
        positions = found.positions(b)
        if expected is None:  # fixed top-10: the planted three rank first
            assert len(positions) == 10 and sorted(positions[:3]) == PLANTED
        else:
            assert sorted(positions) == expected


def test_detectors_are_batch_invariant():
    tokens = planted_tokens(batch=3, seed=4)
    attention = planted_attention(batch=3)
    for name in OUTLIER_DETECTORS.module_dict:
        detector = build_detector(name)
        batched = detector(tokens, attention, (ROWS, COLS))
        for b in range(3):
            single = detector(tokens[b:b + 1], attention[b:b + 1], (ROWS, COLS))
            assert single.positions(0) == batched.positions(b), name


def test_bad_detector_arguments():
    with pytest.raises(ValueError, match="num_outliers must be a positive int or 'auto'"):
        build_detector(dict(type='L2', num_outliers=0))
    with pytest.raises(ValueError, match='contamination must be in'):
        build_detector(dict(type='LOF', contamination=1.5))


def golden_logits(segmentor, golden, index=0):
    x = golden.image_input(index)[None].double()
    shape = tuple(golden.meta['images'][index]['ori_shape'])
    return segmentor.inference(x, [dict(ori_shape=shape)])[0]


def golden_crop(golden, index=0):
    return golden.image_input(index)[None, :, :224, :224].double()


def mitigated_by_hand(tokens, positions, grid):
    """(1 + N, C) tokens of one crop, each outlier patch replaced by the mean of its clean
    8-neighbours inside the grid (zero without one), written out cell by cell."""
    rows, cols = grid
    out = tokens.clone()
    for r, c in positions:
        ring = [tokens[1 + y * cols + x] for y in range(r - 1, r + 2)
                for x in range(c - 1, c + 2)
                if 0 <= y < rows and 0 <= x < cols and (y, x) not in positions]
        out[1 + r * cols + c] = torch.stack(ring).mean(0) if ring else 0
    return out


def robust_top(scores, valid, z=3.5, max_fraction=0.1):
    """The documented 'auto' rule in numpy: candidates above median + z x 1.4826 MAD,
    largest first, at most max_fraction of the patches."""
    scores, valid = scores.numpy(), valid.numpy()
    median = np.median(scores)
    mad = 1.4826 * np.median(np.abs(scores - median))
    chosen = np.flatnonzero(valid & (scores > median + z * mad))
    limit = max(1, int(max_fraction * scores.size))
    return chosen[np.argsort(-scores[chosen], kind='stable')][:limit].tolist()


def test_adaptive_count_follows_the_robust_rule(golden, make_segmentor):
    default = golden_logits(make_segmentor(pm='SOM'), golden)
    fixed = golden_logits(make_segmentor(pm=dict(type='SOM', num_outliers=10,
                                                 cls_weight=1.5)), golden)
    assert torch.equal(default, fixed)  # the release's SOM: ten outliers, CLS weight 1.5
    adaptive = make_segmentor(pm=dict(type='SOM', num_outliers='auto', cls_weight=1.5))
    visual = adaptive.encoder.visual
    counts = []
    for i in range(golden.num_images):
        crop = golden_crop(golden, i)
        x = visual.embed(crop)
        for block in visual.blocks[:visual.num_blocks - 2]:
            x = block(x)
        _, weights = visual.blocks[visual.num_blocks - 2].forward_with_weights(x)
        attn = weights[0].mean(0)  # head mean, (1 + N, 1 + N)
        from_cls = 1.5 * attn[0, 1:]
        expected = robust_top(from_cls, from_cls > attn[1:, 1:].diagonal())
        found = adaptive.encoder(crop).outliers
        cols = found.grid[1]
        assert [r * cols + c for r, c in found.positions(0)] == expected
        counts.append(len(expected))
    assert counts != [10] * golden.num_images  # the rule is not the fixed count here


def test_stream_mitigation_feeds_purified_tokens_to_later_blocks(golden, make_segmentor):
    default = make_segmentor(pm='L2')
    empty = make_segmentor(pm='L2', encoder_cfg=dict(stream_mitigation_blocks=()))
    assert torch.equal(golden_logits(default, golden), golden_logits(empty, golden))
    stream = make_segmentor(pm='L2', encoder_cfg=dict(stream_mitigation_blocks=(4, 6)))
    crop = golden_crop(golden)
    visual = stream.encoder.visual
    grid = visual.grid_size(224, 224)
    x = visual.embed(crop)
    for index, block in enumerate(visual.blocks[:visual.num_blocks - 1], start=1):
        x = block(x)
        if index in (4, 6, visual.num_blocks - 1):  # listed blocks, then the detection block
            top = x[0, 1:].norm(dim=-1).argsort(descending=True)[:10].tolist()
            positions = [(i // grid[1], i % grid[1]) for i in top]
            x = mitigated_by_hand(x[0], positions, grid)[None]
    walk = stream.encoder.walk(crop)
    assert walk.outliers.positions(0) == positions
    assert (walk.tokens - x).abs().max() <= 1e-12
    # Later blocks saw purified tokens: clean patches differ from the release's walk too.
    clean = ~walk.outliers.mask()[0]
    release = default.encoder.walk(crop).tokens[0, 1:][clean]
    assert (release - walk.tokens[0, 1:][clean]).abs().max() > 1e-3
    with pytest.raises(ValueError, match='needs an outlier detector'):
        make_segmentor(purify=False, encoder_cfg=dict(stream_mitigation_blocks=(4,)))
