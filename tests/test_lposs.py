"""LPOSS and LPOSS+ against their release's golden outputs (float64, tiny CLIP with exact
GELU and tiny DINO ViT/16) through the VOC21 configs; the propagation's pieces (kNN
search, conjugate gradient, pixel graph) against the release's formulas written out here;
batching, purification, every config, and the propagation as a refiner of another method."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from sfp.models import LogitMap, postprocess_logits
from sfp.models.data_preprocessor import unit_rgb
from sfp.models.propagation import (
    LabelPropagation,
    PixelGraph,
    conjugate_gradient,
    knn_search,
    rgb_to_lab,
)

from .conftest import FIXTURES, MEAN, REPO, SHARED, STD, TINY_CKPT, assert_batch_equals_single

GOLDEN = torch.load(SHARED / 'golden' / 'vfm' / 'lposs.pt', weights_only=False)
CASES = {case['name']: case for case in GOLDEN['cases']}
TINY_DINO16 = FIXTURES / 'tiny_dino_vit16.pth'
TOL = 1e-9
BENCHMARKS = ('voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k')


def model_cfg(variant, benchmark='voc21', **overrides):
    cfg = Config.fromfile(str(REPO / 'configs' / 'lposs' / f'{variant}_vit-b16_{benchmark}.py'))
    cfg.model.update(clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO16), device='cpu',
                     **overrides)
    return cfg


def image_input(image):
    """The model input: the release's resized BGR image, to RGB, normalised in float64."""
    return (image['resized'].flip(0).double() - MEAN) / STD


class Recorder:
    """Runs a propagation's level and keeps what went in and came out."""

    def __init__(self, prop, name):
        self.calls, self.method = [], getattr(prop, name)
        setattr(prop, name, self)

    def __call__(self, *args):
        out = self.method(*args)
        self.calls.append((args, out))
        return out


def check_settings(seg, cfg, params):
    prop = seg.propagation
    names = ('alpha', 'gamma', 'k', 'sigma', 'pix_dist_pow', 'pixel_refine', 'tau', 'r',
             'enc_type_feats', 'cg_tol', 'cg_maxiter')
    assert {k: getattr(prop, k) for k in names} == {k: params[k] for k in names}
    assert (seg.slide_crop, seg.slide_stride) == (params['slide_crop'], params['slide_stride'])
    assert [s.scale for s in cfg.test_dataloader.dataset.pipeline if s.type == 'Resize'] == \
        [tuple(params['img_scale'])]


@pytest.fixture(scope='module')
def lposs():
    """The VOC21 LPOSS config in float64 on each golden image: the segmentor, the class
    logits at ``ori_shape`` and what the patch level saw and gave."""
    case = CASES['voc21_lposs']
    cfg = model_cfg('lposs', precision='fp64', return_probs=True)
    seg = MODELS.build(cfg.model)
    check_settings(seg, cfg, case['params'])
    patches = Recorder(seg.propagation, 'propagate_patches')
    outputs = [seg.inference(image_input(im)[None], [dict(ori_shape=tuple(im['ori_shape']))])[0]
               for im in case['images']]
    return seg, outputs, patches.calls


def check_patch_level(case, seg, images, patch_calls):
    for im, ((scores, features, positions), lp) in zip(images, patch_calls):
        x = image_input(im)
        y1, y2, x1, x2 = im['windows'][0].tolist()
        out = seg.encoder(x[None, :, y1:y2, x1:x2])
        assert (out.features[0] - im['crop0_features']).abs().max() <= TOL
        assert scores.shape == (im['n_nodes'], len(case['query_idx']))
        nodes = im['node_idx']
        assert (scores[nodes] - im['clip_scores_at_nodes']).abs().max() <= TOL
        graph = seg.propagation.patch_graph(features, positions)
        assert ((graph.degree[nodes] - im['degree_at_nodes']).abs().max()
                <= TOL * im['degree_at_nodes'].max())
        assert ((lp[nodes] - im['lp_scores_at_nodes']).abs().max()
                <= TOL * im['lp_scores_at_nodes'].abs().max())


def test_lposs_reproduces_the_release(lposs):
    seg, outputs, patch_calls = lposs
    case = CASES['voc21_lposs']
    assert seg.query_idx.tolist() == case['query_idx']
    assert (seg.query_features - case['query_features']).abs().max() <= TOL
    check_patch_level(case, seg, case['images'], patch_calls)
    for im, logits, ((_, features, _), _) in zip(case['images'], outputs, patch_calls):
        v = im['crop0_vfm_feats']
        assert (features[:196] - v / v.norm(dim=-1, keepdim=True)).abs().max() <= TOL
        sims, idx = knn_search(features, 400, features[im['knn_node_idx']])
        for row, want in zip(idx, im['knn_idx']):
            assert set(row.tolist()) == set(want.tolist())
        assert (sims - im['knn_sims']).abs().max() <= TOL
        yx = im['sample_yx']
        got = logits[:, yx[:, 0], yx[:, 1]].t()
        assert got.shape == im['logits_at_samples'].shape
        assert (got - im['logits_at_samples']).abs().max() <= TOL
        _, labels = postprocess_logits(logits, seg.logit_query_idx, seg.num_classes,
                                       seg.logit_scale)
        assert torch.equal(labels[0], im['pred'].long())


@pytest.fixture(scope='module')
def tiny_plus():
    cfg = model_cfg('lposs_plus', precision='fp64', return_probs=True)
    seg = MODELS.build(cfg.model)
    check_settings(seg, cfg, CASES['voc21_lposs_plus']['params'])
    return seg


# The pixel level on a 448 x 673 image is about 2e9 multiply-adds per CG step for all 46
# queries: the suite checks a few columns (each column's CG is independent of the
# others); benchmarks/lposs_golden.py checks the whole case.
PIXEL_COLUMNS = [0, 27]


def test_lposs_plus_reproduces_the_release(tiny_plus):
    seg, case = tiny_plus, CASES['voc21_lposs_plus']
    im = case['images'][0]
    x = image_input(im)
    prop = seg.propagation
    logits = seg.slide_maps([x])[0].logits
    nodes = seg.patch_nodes(x, logits)
    lp = prop.propagate_patches(nodes.scores, nodes.features, nodes.positions)
    check_patch_level(case, seg, [im], [((nodes.scores, nodes.features, nodes.positions), lp)])
    scores = LogitMap(nodes.canvas(lp, logits.grid), logits.rows, logits.cols).dense()
    yx = im['sample_yx_resized']
    at = (slice(None), yx[:, 0], yx[:, 1])
    assert (scores[at].t() - im['pixel_scores_at_resized']).abs().max() <= TOL
    rgb = unit_rgb(x)
    assert (rgb * 255 - im['resized'].flip(0)).abs().max() <= 1e-12
    refined = prop.propagate_pixels(scores[PIXEL_COLUMNS], rgb)
    assert (refined[at].t() - im['refined_at_resized'][:, PIXEL_COLUMNS]).abs().max() <= TOL
    graph = prop.pixel_graph(rgb)
    lab = rgb_to_lab(rgb) / torch.tensor([100.0, 128.0, 128.0]).view(3, 1, 1)
    assert (lab[at].t() - im['lab_at_resized']).abs().max() <= 1e-12
    degree = im['pixel_degree_at_resized']
    assert (graph.degree[yx[:, 0], yx[:, 1]] - degree).abs().max() <= 1e-13 * degree.max()


# -- the pieces ----------------------------------------------------------------------------
def cupy_cg(matrix, b, tol, maxiter):
    """cupyx.scipy.sparse.linalg.cg for one column, as written in cupy 13 (no
    preconditioner, x0 = 0)."""
    x = np.zeros_like(b)
    b_norm = np.linalg.norm(b)
    if b_norm == 0:
        return b
    atol = tol * b_norm
    r = b - matrix @ x
    rho, p = 0, None
    for iters in range(maxiter):
        rho1, rho = rho, r @ r
        p = r if iters == 0 else r + rho / rho1 * p
        q = matrix @ p
        alpha = rho / (p @ q)
        x = x + alpha * p
        r = r - alpha * q
        if np.linalg.norm(r) <= atol:
            break
    return x


def test_conjugate_gradient_follows_cupy():
    gen = np.random.default_rng(0)
    a = gen.normal(size=(30, 30))
    matrix = a @ a.T + 30 * np.eye(30)
    b = gen.normal(size=(30, 4))
    b[:, 2] = 0
    b[:, 3] = matrix @ gen.normal(size=30)
    t = torch.from_numpy(matrix)
    for tol, maxiter in ((1e-6, 10), (1e-3, 50)):
        got = conjugate_gradient(lambda v: t @ v, torch.from_numpy(b), maxiter, tol).numpy()
        want = np.stack([cupy_cg(matrix, b[:, j], tol, maxiter) for j in range(4)], axis=1)
        assert np.abs(got - want).max() <= 1e-12


def test_knn_search_in_blocks_is_exact():
    features = torch.nn.functional.normalize(torch.randn(300, 16, dtype=torch.float64), dim=1)
    sims, idx = knn_search(features, 25, block=7)
    full = features @ features.T
    top = full.topk(25, dim=1)
    assert torch.equal(idx, top.indices) and torch.equal(sims, top.values)
    assert (idx[:, 0] == torch.arange(300)).all()  # each node finds itself first


def test_pixel_graph_against_the_release_construction():
    """L x for the release's graph: W_pq = exp(-||lab_p - lab_q|| / tau) for every q in
    p's (2 n + 1)^2 square (n = r // 2), built densely here; S = D^-1/2 W D^-1/2."""
    gen = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (3, 9, 11), generator=gen).double() / 255
    prop = LabelPropagation(patch=False, pixel_refine=True, r=5, tau=0.1)
    graph = prop.pixel_graph(rgb)
    lab = (rgb_to_lab(rgb) / torch.tensor([100.0, 128.0, 128.0]).view(3, 1, 1)).reshape(3, -1).T
    h, w, n = 9, 11, 2
    dense = torch.zeros(h * w, h * w, dtype=torch.float64)
    for p in range(h * w):
        for dy in range(-n, n + 1):
            for dx in range(-n, n + 1):
                y, x = p // w + dy, p % w + dx
                if (dy, dx) != (0, 0) and 0 <= y < h and 0 <= x < w:
                    dense[p, y * w + x] = torch.exp(-(lab[p] - lab[y * w + x]).norm() / 0.1)
    degree = dense.sum(1)
    assert (graph.degree.flatten() - degree).abs().max() <= 1e-14
    laplacian = torch.eye(h * w, dtype=torch.float64) - 0.95 * dense / torch.outer(
        degree.sqrt(), degree.sqrt())
    x = torch.randn(h * w, 3, generator=gen, dtype=torch.float64)
    assert (graph.laplacian_apply(0.95)(x) - laplacian @ x).abs().max() <= 1e-13
    assert isinstance(graph, PixelGraph) and len(graph.offsets) == ((2 * n + 1) ** 2 - 1) // 2


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match='enc_type_feats'):
        LabelPropagation(patch=False, pixel_refine=True, enc_type_feats='x')
    with pytest.raises(ValueError, match='vfm_path'):
        LabelPropagation()
    cfg = model_cfg('lposs')
    cfg.model.update(vfm_path=None)
    with pytest.raises(ValueError, match='vfm_path'):
        MODELS.build(cfg.model)
    cfg = model_cfg('lposs')
    cfg.model.propagation.update(knn=3)
    with pytest.raises(ValueError, match='propagation'):
        MODELS.build(cfg.model)


# -- batching, purification, configs ---------------------------------------------------
def small_images(dtype=torch.float64):
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(3, *size, generator=gen, dtype=dtype)
            for size in ((224, 300), (250, 224))]


def test_batched_equals_single(tiny_plus, monkeypatch):
    monkeypatch.setattr(tiny_plus.propagation, 'r', 3)  # the pixel level is per image
    images = small_images()
    assert_batch_equals_single(tiny_plus, images, [(100, 130), (250, 224)])


def test_purify_works_with_lposs():
    seg = MODELS.build(model_cfg('lposs', purify=True, precision='fp64',
                                 return_probs=True).model)
    image = small_images()[0]
    assert seg.encoder(image[None, :, :224, :224]).outliers is not None
    out = seg.predict(image[None])[0]
    assert out.pred_sem_seg.data.shape == (1, 224, 300)
    assert torch.allclose(out.seg_logits.data.sum(0), torch.ones(224, 300, dtype=torch.float64))


@pytest.mark.parametrize('variant', ['lposs', 'lposs_plus'])
@pytest.mark.parametrize('benchmark', BENCHMARKS)
def test_every_config_runs_one_image(variant, benchmark):
    cfg = model_cfg(variant, benchmark)
    seg = MODELS.build(cfg.model)
    image = small_images(torch.float32)[1][:, :48, :64]  # one window, the whole image
    out = seg.predict(image[None])[0]
    assert out.pred_sem_seg.data.shape == (1, 48, 64)
    assert int(out.pred_sem_seg.data.max()) < seg.num_classes
    assert (seg.propagation.pixel_refine, seg.synonyms_at_input) == (variant == 'lposs_plus', True)


# -- the propagation as a refiner of another method -------------------------------------
@pytest.fixture(scope='module')
def refined_maskclip():
    def build(**propagation):
        return MODELS.build(dict(
            type='SFPSegmentor', clip_path=str(TINY_CKPT),
            name_path=str(REPO / 'configs' / 'classnames' / 'cls_voc20.txt'),
            encoder=dict(type='NACLIPEncoder'), device='cpu', precision='fp64',
            vfm_path=str(TINY_DINO16) if propagation.get('patch', True) else None,
            propagation=dict(propagation, k=50), return_probs=True))
    return build(), build(patch=False, pixel_refine=True, r=5)


def test_refiner_on_another_method(refined_maskclip):
    images = small_images()
    for seg in refined_maskclip:
        first = [out.seg_logits.data for out in seg.predict(images)]
        again = [out.seg_logits.data for out in seg.predict(images)]
        assert [f.shape for f in first] == [(20, 224, 300), (20, 250, 224)]
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_refiner_keeps_a_constant_map_constant(refined_maskclip):
    """Constant class maps stay constant labels, each class scaled by one common spatial
    profile (the symmetric normalisation D^-1/2 W D^-1/2 does not keep values constant)."""
    seg = refined_maskclip[0]
    image = small_images()[0]
    levels = torch.linspace(-0.2, 0.3, 20, dtype=torch.float64)
    layout = seg.window_layout(image)
    canvas = levels.view(-1, 1, 1).expand(-1, *layout.canvas_shape).clone()
    logits = LogitMap(canvas, torch.eye(canvas.shape[1], dtype=torch.float64),
                      torch.eye(canvas.shape[2], dtype=torch.float64))
    out = seg.propagated(image, logits).grid
    profile = out / levels.view(-1, 1, 1)
    assert (profile - profile[0]).abs().max() <= 1e-12
    assert (out.argmax(0) == 19).all()
    pixel = refined_maskclip[1].propagated(image, LogitMap.from_grid(
        levels.view(-1, 1, 1).expand(-1, 40, 50).clone())).grid
    assert (pixel.argmax(0) == 19).all()
    assert ((pixel / levels.view(-1, 1, 1)) - pixel[0] / levels[0]).abs().max() <= 1e-12


def test_patch_neighbourhood(tiny_plus):
    from sfp.analysis import patch_neighbourhood

    image = small_images()[0]
    found = patch_neighbourhood(tiny_plus, image, (100.0, 250.0))
    assert found.neighbours[0] == found.query and found.neighbours.shape == (392,)
    # the nearest cell centre: row 6 (y 104) of the window at x 76, column 10 (x 244)
    assert tuple(found.positions[found.query].tolist()) == (104.0, 244.0)
    assert (found.similarities[:-1] >= found.similarities[1:]).all()
    assert abs(found.weights[0] - 1) <= 1e-12 and (found.weights <= 1 + 1e-12).all()
