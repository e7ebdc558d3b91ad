"""SFP's parts on hand-made cases the golden numbers do not cover."""
import pytest
import torch

from sfp import clip
from sfp.models import (
    PAMR,
    CLSSelfAttentionDetector,
    HierarchicalIntegrator,
    L2NormDetector,
    LOFDetector,
    LogitMap,
    OutlierDetector,
    Outliers,
    SemanticAwareAttentionEnhancer,
    SFPEncoder,
    SlidingWindowLayout,
    bilinear_matrix,
    guidance_attention,
    mitigate_outliers,
    postprocess_logit_map,
    postprocess_logits,
    sliding_windows,
    window_average_matrix,
)
from sfp.models.detectors import local_outlier_factor
from sfp.models.postprocess import suppress_small_classes

from .conftest import TINY_CKPT
from .test_detectors import mitigated_by_hand


@pytest.fixture(scope='module')
def visual():
    return clip.load(TINY_CKPT, precision='fp64').visual


def grid_tokens(rows, cols, channels=2):
    """Token (r, c) has value [r * 10 + c, -(r * 10 + c)] (times channel index + 1)."""
    base = torch.tensor([[r * 10.0 + c for c in range(cols)] for r in range(rows)])
    return torch.stack([base * (k + 1) * (-1) ** k for k in range(channels)], dim=-1)


def test_mitigation_by_hand():
    rows, cols = 3, 4
    tokens = grid_tokens(rows, cols).view(1, rows * cols, 2)
    mask = torch.zeros(1, rows * cols, dtype=torch.bool)
    for r, c in [(0, 0), (1, 1), (2, 3)]:
        mask[0, r * cols + c] = True
    out = mitigate_outliers(tokens, mask, (rows, cols)).view(rows, cols, 2)
    value = lambda r, c: r * 10.0 + c  # noqa: E731
    # (0,0): clean neighbours (0,1), (1,0) -- (1,1) is an outlier.
    assert out[0, 0, 0] == (value(0, 1) + value(1, 0)) / 2
    # (1,1): 8 neighbours minus the outlier (0,0).
    ring = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert out[1, 1, 0] == pytest.approx(sum(value(r, c) for r, c in ring) / 7)
    # (2,3): corner with neighbours (1,2), (1,3), (2,2).
    assert out[2, 3, 1] == pytest.approx(-2 * (value(1, 2) + value(1, 3) + value(2, 2)) / 3)
    clean = ~mask.view(rows, cols)
    assert torch.equal(out[clean], tokens.view(rows, cols, 2)[clean])


def test_outlier_with_no_usable_neighbour_becomes_zero():
    tokens = grid_tokens(3, 3).view(1, 9, 2) + 1
    mask = torch.tensor([[True, True, False, True, True, False, False, False, False]])
    out = mitigate_outliers(tokens, mask, (3, 3))
    assert torch.equal(out[0, 0], torch.zeros(2))  # (0,0): all 3 neighbours are outliers
    assert out[0, 4].ne(0).all()


def test_guidance_attention_rows_without_support_are_zero_not_nan():
    sim = torch.tensor([[[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    weights = guidance_attention(sim)
    assert torch.isfinite(weights).all()
    assert torch.equal(weights[0, 2], torch.zeros(3))
    # Row 0 by hand: mean(S) = 3 / 9; G = 3 * (S - mean) masks entries below the mean.
    g = 3 * (torch.tensor([1.0, 0.5]) - 1 / 3)
    assert torch.allclose(weights[0, 0, :2], g.softmax(0)) and weights[0, 0, 2] == 0


class FixedDetector(OutlierDetector):
    """Reports the same positions for every crop."""

    def __init__(self, positions):
        super().__init__()
        self.positions = positions

    def forward(self, tokens, attention, grid):
        index = torch.tensor([[r * grid[1] + c for r, c in self.positions]] * tokens.shape[0])
        return Outliers(index, grid)


def test_encoder_stays_finite_when_an_outlier_has_no_usable_neighbour(visual):
    corner = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (0, 0) has no clean neighbour
    parts = dict(enhancer=SemanticAwareAttentionEnhancer(), integrator=HierarchicalIntegrator())
    encoder = SFPEncoder(visual, FixedDetector(corner), **parts)
    images = torch.randn(2, 3, 224, 224, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    walk, plain = encoder.walk(images), SFPEncoder(visual, None, **parts).walk(images)
    for b in range(2):
        expected = mitigated_by_hand(plain.tokens[b], corner, walk.grid)
        assert (walk.tokens[b] - expected).abs().max() <= 1e-12
        assert torch.equal(walk.tokens[b, 1], torch.zeros(visual.width, dtype=torch.float64))
    out = encoder(images)
    assert torch.isfinite(out.features).all()
    assert out.outliers.positions(1) == corner


def attention_with_cls_row(cls_row, diag):
    """(1, 2 heads, 1+N, 1+N) attention whose head mean has the given CLS row and diagonal."""
    n = len(cls_row)
    attn = torch.zeros(1, 2, n + 1, n + 1, dtype=torch.float64)
    attn[0, :, 0, 1:] = torch.tensor(cls_row, dtype=torch.float64)
    attn[0, :, 1:, 1:] = torch.diag(torch.tensor(diag, dtype=torch.float64))
    return attn


def test_som_with_fewer_candidates_than_ten():
    cls_row = [0.1, 0.5, 0.2, 0.9, 0.3, 0.05]
    diag = [0.2, 0.1, 0.5, 0.1, 0.1, 0.9]
    # Scaled by 1.5: 0.15<0.2 no, 0.75 yes, 0.3<0.5 no, 1.35 yes, 0.45 yes, 0.075 no.
    found = CLSSelfAttentionDetector()(None, attention_with_cls_row(cls_row, diag), (2, 3))
    assert found.positions(0) == [(1, 0), (0, 1), (1, 1)]  # by decreasing CLS attention
    none = CLSSelfAttentionDetector()(None, attention_with_cls_row([0.1] * 6, [0.9] * 6), (2, 3))
    assert none.positions(0) == [] and not none.mask().any()


def test_som_keeps_the_ten_strongest():
    n = 16
    cls_row = [i / 100 for i in range(n)]
    found = CLSSelfAttentionDetector()(None, attention_with_cls_row(cls_row, [0.0] * n), (4, 4))
    assert [r * 4 + c for r, c in found.positions(0)] == list(range(15, 5, -1))


def test_non_square_grid_outlier_positions(visual):
    """Rows and columns come from the grid's column count (the release used the row count)."""
    images = torch.randn(2, 3, 224, 160, dtype=torch.float64)  # 14 x 10 patches
    encoder = SFPEncoder(visual, L2NormDetector(num_outliers=4),
                         enhancer=SemanticAwareAttentionEnhancer(),
                         integrator=HierarchicalIntegrator())
    out = encoder(images)
    assert out.grid == (14, 10) and out.features.shape == (2, 140, 64)
    x = visual.embed(images)
    for block in visual.blocks[:11]:
        x = block(x)
    norms = x[:, 1:].norm(dim=-1)
    for b in range(2):
        expected = [(int(i) // 10, int(i) % 10) for i in norms[b].argsort(descending=True)[:4]]
        assert out.outliers.positions(b) == expected


def test_planted_high_norm_tokens_are_found():
    tokens = torch.randn(3, 1 + 6 * 7, 16)
    planted = [(0, 5), (4, 6), (2, 2)]
    for b in range(3):
        for r, c in planted:
            tokens[b, 1 + r * 7 + c] *= 50 + r
    found = L2NormDetector(num_outliers=3)(tokens, None, (6, 7))
    assert all(sorted(found.positions(b)) == sorted(planted) for b in range(3))


def test_lof_matches_brute_force_definition():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    k = 4
    scores = local_outlier_factor(x, n_neighbors=k)
    for b in range(2):
        d = torch.cdist(x[b], x[b]) ** 2
        knn = [sorted(range(12), key=lambda j, i=i: (d[i, j].item(), j) if j != i
                      else (float('inf'), j))[:k] for i in range(12)]
        kdist = [d[i, knn[i][-1]].item() for i in range(12)]
        lrd = [k / sum(max(d[i, j].item(), kdist[i]) for j in knn[i]) for i in range(12)]
        expected = [sum(lrd[j] / lrd[i] for j in knn[i]) / k for i in range(12)]
        assert torch.allclose(scores[b], torch.tensor(expected, dtype=torch.float64))


def test_lof_detector_finds_a_planted_far_token():
    torch.manual_seed(1)
    tokens = torch.randn(1, 1 + 100, 8, dtype=torch.float64)
    tokens[0, 1 + 37] += 40
    found = LOFDetector(n_neighbors=10, contamination=0.01)(tokens, None, (10, 10))
    assert (3, 7) in found.positions(0)


def test_sliding_windows_by_hand():
    assert sliding_windows(336, 505, 224, 112) == [
        (y1, y2, x1, x2) for y1, y2 in [(0, 224), (112, 336)]
        for x1, x2 in [(0, 224), (112, 336), (224, 448), (281, 505)]]
    assert sliding_windows(192, 192, 224, 112) == [(0, 192, 0, 192)]
    assert sliding_windows(224, 100, 224, 112) == [(0, 224, 0, 100)]


def resize(x: torch.Tensor, size) -> torch.Tensor:
    return torch.nn.functional.interpolate(x[None], size=size, mode='bilinear',
                                           align_corners=False)[0]


@pytest.mark.parametrize('out_size,in_size', [(224, 14), (23, 7), (7, 23), (12, 12), (1, 5),
                                              (500, 336)])
def test_bilinear_matrix_is_interpolate(out_size, in_size):
    torch.manual_seed(0)
    x = torch.randn(3, in_size, 4, dtype=torch.float64)
    expected = resize(x, (out_size, 4))
    assert torch.allclose(bilinear_matrix(out_size, in_size) @ x, expected, atol=1e-13)


def test_window_average_matrix_refuses_uncovered_pixels():
    with pytest.raises(ValueError, match='do not cover an axis of length 10'):
        window_average_matrix(10, [(0, 4), (5, 10)], [1, 1])
    with pytest.raises(ValueError, match='do not cover'):
        window_average_matrix(10, [(0, 4), (4, 9)], [1, 1])
    assert window_average_matrix(4, [(0, 4)], [1]).tolist() == [[1.0]] * 4


@pytest.mark.parametrize('size,ori', [((336, 505), (375, 563)), ((192, 192), (480, 480)),
                                      ((224, 100), (224, 100)), ((560, 1120), (1024, 2048)),
                                      ((336, 2400), (300, 2000))])  # > 256 grid columns
def test_logit_map_equals_upsampling_and_averaging_every_crop(size, ori):
    """The factored map against the release's way, written out: resize each crop's grid to
    its window, sum the windows, divide by the coverage count, resize to the image."""
    torch.manual_seed(0)
    layout = SlidingWindowLayout.build(*size, crop=224, stride=112, cell=16)
    canvas = torch.randn(5, *layout.canvas_shape, dtype=torch.float64)
    total = torch.zeros(5, *size, dtype=torch.float64)
    count = torch.zeros(1, *size, dtype=torch.float64)
    for r, c, (y1, y2, x1, x2) in layout.windows():
        grid = canvas[(slice(None), *layout.block(r, c))]
        assert grid.shape[1:] == ((y2 - y1) // 16, (x2 - x1) // 16)
        total[:, y1:y2, x1:x2] += resize(grid, (y2 - y1, x2 - x1))
        count[:, y1:y2, x1:x2] += 1
    expected = resize(total / count, ori)
    logit_map = layout.logit_map(canvas).resized(ori)
    assert logit_map.size == ori
    assert torch.allclose(logit_map.dense(), expected, atol=1e-12)
    for budget in (1, 5 * ori[1] * 7):  # one row per band, seven rows per band
        banded = torch.cat([band for _, band in logit_map.row_bands(budget)], dim=1)
        assert torch.allclose(banded, expected, atol=1e-12)


def test_area_threshold_removes_a_small_class():
    probs = torch.zeros(3, 10, 10, dtype=torch.float64)
    probs[0] = 0.5
    probs[1, :, :5] = 0.9  # 50 pixels of class 1
    probs[2, :, 5:] = 0.3  # class 2 wins nowhere...
    probs[2, 0, 9] = 0.95  # ...except 1 pixel: 1 / 51 of the non-0 pixels
    kept = suppress_small_classes(probs.clone(), area_thd=0.1)
    assert kept[2].eq(0).all() and torch.equal(kept[1], probs[1])
    assert torch.equal(suppress_small_classes(probs.clone(), area_thd=0.01), probs)


def test_postprocess_synonym_max_and_probability_threshold():
    # 3 queries, classes [0, 1, 1]: the class probability is the max over synonyms.
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.9, 0.2]], dtype=torch.float64)
    logits = logits.view(3, 1, 2)
    probs, labels = postprocess_logits(logits, torch.tensor([0, 1, 1]), 2, logit_scale=1.0)
    softmax = (logits * 1.0).softmax(0)
    assert torch.allclose(probs[1], torch.maximum(softmax[1], softmax[2]))
    assert labels.tolist() == [[[1, 0]]]
    _, thresholded = postprocess_logits(logits, torch.tensor([0, 1, 1]), 2, 1.0, prob_thd=0.45)
    assert thresholded.tolist() == [[[0, 0]]]  # top probabilities 0.40 and 0.46 -> 0 and 0


def test_pamr_on_a_flat_image_is_a_neighbourhood_mean():
    pamr = PAMR(num_iter=1, dilations=(1,))
    image = torch.ones(1, 3, 4, 5, dtype=torch.float64)
    mask = torch.arange(20, dtype=torch.float64).view(1, 1, 4, 5)
    out = pamr(image, mask)
    padded = torch.nn.functional.pad(mask, (1, 1, 1, 1), mode='replicate')[0, 0]
    for y in range(4):
        for x in range(5):
            ring = [padded[y + 1 + dy, x + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if (dy, dx) != (0, 0)]
            assert out[0, 0, y, x] == pytest.approx(sum(ring).item() / 8)


def test_pamr_does_not_bleed_across_an_edge():
    image = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    image[..., 3:] = 1.0  # left half dark, right half bright
    mask = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    mask[0, 0, :, :2] = 1.0  # class 0 seeded on the far left only
    mask[0, 1, :, 4:] = 1.0
    out = PAMR(num_iter=10, dilations=(1,))(image, mask)
    assert out[0, 0, :, 2].min() > 0.5  # class 0 fills its own region...
    assert out[0, 0, :, 3:].max() < 1e-6  # ...and never crosses the edge


@pytest.mark.parametrize('area_thd', [None, 0.3])
def test_banded_postprocessing_equals_full_resolution(area_thd):
    torch.manual_seed(0)
    coarse = torch.randn(5, 7, 9, dtype=torch.float64)
    query_idx = torch.tensor([0, 1, 1, 2, 3])
    size = (23, 31)
    full = torch.nn.functional.interpolate(coarse[None], size=size, mode='bilinear',
                                           align_corners=False)[0]
    probs, labels = postprocess_logits(full, query_idx, 4, 10.0, 0.3, area_thd)
    logit_map = LogitMap.from_grid(coarse).resized(size)
    for budget in (1, 5 * 31 * 4, 1 << 24):  # one row per band ... everything at once
        banded_probs, banded_labels = postprocess_logit_map(logit_map, query_idx, 4, 10.0,
                                                            0.3, area_thd, max_elements=budget)
        assert torch.equal(banded_labels, labels)
        assert torch.allclose(banded_probs, probs, atol=1e-12)
    none, _ = postprocess_logit_map(logit_map, query_idx, 4, 10.0, return_probs=False)
    assert none is None


@pytest.mark.parametrize('terms', [('vv', 'guidance'), ('qq', 'vv'), ('kk', 'vv', 'guidance')])
def test_enhancer_self_self_terms_by_hand(visual, terms):
    """The supplementary Table 1's variants: each term's attention written out from the last
    block's in_proj, averaged, then out_proj and the CLS residual."""
    block = visual.blocks[-1]
    generator = torch.Generator().manual_seed(0)
    patches = torch.randn(2, 12, visual.width, generator=generator, dtype=torch.float64)
    cls = torch.randn(2, 1, visual.width, generator=generator, dtype=torch.float64)
    guidance = torch.softmax(torch.randn(2, 12, 12, generator=generator,
                                         dtype=torch.float64), -1)
    heads, width = block.attn.num_heads, visual.width
    qkv = block.ln_1(patches) @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias
    q, k, v = (t.view(2, 12, heads, width // heads).transpose(1, 2)
               for t in qkv.split(width, dim=-1))
    scale = (width // heads) ** -0.5
    attention = {'qq': torch.softmax(q @ q.transpose(-2, -1) * scale, -1),
                 'kk': torch.softmax(k @ k.transpose(-2, -1) * scale, -1),
                 'vv': torch.softmax(v @ v.transpose(-2, -1) * scale, -1),
                 'guidance': guidance.unsqueeze(1)}
    mixed = sum(attention[t] @ v for t in terms) / len(terms)
    expected = block.attn.out_proj(mixed.transpose(1, 2).reshape(2, 12, width)) + 0.3 * cls
    enhancer = SemanticAwareAttentionEnhancer(0.3, terms=terms)
    assert torch.allclose(enhancer(block, patches, cls, guidance), expected, rtol=0,
                          atol=1e-12)
