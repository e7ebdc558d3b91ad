"""Shared fixtures: the tiny golden CLIP, the compact golden numbers, an isolated cache."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import sfp  # noqa: F401  (installs the mmcv.ops stand-in, registers SFP in mmseg)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / 'tests' / 'fixtures'
SHARED = REPO.parent / 'shared'
TINY_CKPT = FIXTURES / 'tiny_clip_state_dict.pt'
TINY_DINO = FIXTURES / 'tiny_dino_vit8.pth'  # DINO's key names, ViT/8, 4 blocks
TINY_DINOV2 = FIXTURES / 'tiny_dinov2_vit14.pth'  # DINOv2's key names, 4 registers
TINY_SAM = FIXTURES / 'tiny_sam_vitb.pth'  # a whole SAM, released key names, width 128
CLASSNAMES = REPO / 'configs' / 'classnames'
MEAN = torch.tensor([122.771, 116.746, 104.094]).view(3, 1, 1)
STD = torch.tensor([68.501, 66.632, 70.323]).view(3, 1, 1)
DETECTORS = ('SOM', 'L2', 'LOF')


@pytest.fixture(scope='session', autouse=True)
def isolated_cache(tmp_path_factory):
    """Downloads and text features go to a temporary cache, never the user's."""
    path = tmp_path_factory.mktemp('sfp_cache')
    old = os.environ.get('SFP_CACHE')
    os.environ['SFP_CACHE'] = str(path)
    yield path
    if old is None:
        os.environ.pop('SFP_CACHE', None)
    else:
        os.environ['SFP_CACHE'] = old


class Golden:
    """The compact copy of the release's golden outputs (see fixtures/make_golden_fixture.py)."""

    def __init__(self, path: Path):
        data = np.load(path)
        self.arrays = {k: data[k] for k in data.files}
        self.meta = json.loads(self.arrays.pop('meta').tobytes())
        self.params = self.meta['params']

    def tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[key])

    @property
    def query_features(self) -> torch.Tensor:
        return self.tensor('query_features')

    def image_input(self, i: int) -> torch.Tensor:
        """The normalised (3, H, W) float32 input of main image i, bit-exact."""
        return (self.tensor(f'images/{i}/rgb').float() - MEAN) / STD

    @property
    def num_images(self) -> int:
        return len(self.meta['images'])


@pytest.fixture(scope='session')
def golden() -> Golden:
    return Golden(FIXTURES / 'golden_voc21_compact.npz')


@pytest.fixture(scope='session')
def make_segmentor():
    """Build (and memoise) tiny-CLIP segmentors on the CPU."""
    built = {}

    def make(**kwargs):
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if key not in built:
            args = dict(clip_path=str(TINY_CKPT), name_path=str(CLASSNAMES / 'cls_voc21.txt'),
                        device='cpu', precision='fp64', logit_scale=50, prob_thd=0.15,
                        area_thd=0.1)
            args.update(kwargs)
            built[key] = sfp.SFPSegmentor(**args)
        return built[key]

    return make


def sample(logits: torch.Tensor, yx: torch.Tensor) -> torch.Tensor:
    """(Q, H, W) logits at (K, 2) pixel positions -> (K, Q)."""
    return logits[:, yx[:, 0], yx[:, 1]].t()


def assert_batch_equals_single(segmentor, images, shapes, tol: float = 1e-12) -> None:
    """``segmentor.predict`` on ``images`` together (outputs of ``shapes``) gives each
    image's labels exactly as alone, and its probabilities to ``tol``."""
    from mmseg.structures import SegDataSample

    def samples(sizes):
        return [SegDataSample(metainfo=dict(ori_shape=size)) for size in sizes]

    batched = segmentor.predict(images, samples(shapes))
    for image, shape, out in zip(images, shapes, batched):
        single = segmentor.predict(image[None], samples([shape]))[0]
        assert out.pred_sem_seg.data.shape == (1, *shape)
        assert torch.equal(out.pred_sem_seg.data, single.pred_sem_seg.data)
        assert (out.seg_logits.data - single.seg_logits.data).abs().max() <= tol
