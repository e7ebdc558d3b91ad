"""The analysis API against the encoder it describes."""
import numpy as np
import pytest
import torch

from sfp.analysis import analyze_image, center_crop
from sfp.datasets import read_image

from .conftest import REPO


@pytest.fixture(scope='module')
def analysis(make_segmentor):
    image = read_image(REPO / 'demo' / 'images' / '000000214753.jpg')
    seg = make_segmentor(pm='SOM', precision='fp64')
    return seg, image, analyze_image(seg, image)


def test_shapes_and_contents(analysis):
    seg, image, result = analysis
    blocks = seg.encoder.visual.num_blocks
    assert result.crop.shape == (224, 224, 3) and result.grid == (14, 14)
    assert result.cls_attention.shape == (blocks, 14, 14)
    assert result.token_norms.shape == (blocks, 14, 14)
    assert result.labels.shape == image.shape[:2]
    assert set(result.outliers) == {'SOM', 'L2', 'LOF', 'DBSCAN', 'KMeans', 'cls_attn'}
    assert result.class_names[1] == 'aeroplane' and result.detect_block == 11
    # CLS attention rows are probabilities over CLS + patches.
    assert (result.cls_attention.sum(dim=(1, 2)) <= 1 + 1e-6).all()


def test_outliers_and_purification_match_the_encoder(analysis):
    seg, image, result = analysis
    from sfp.apis import prepare_image
    from sfp.models.data_preprocessor import CLIP_MEAN, CLIP_STD
    crop = center_crop(prepare_image(image), 224).flip(0).float()
    x = ((crop - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1))
    out = seg.encoder(x[None].double())
    assert result.outliers['SOM'] == out.outliers.positions(0)
    row, col = result.outliers['SOM'][0]
    raw, purified = result.similarity_map(row, col, False), result.similarity_map(row, col)
    assert raw.shape == (14, 14) and not torch.equal(raw, purified)
    # Every (non-zero) token is fully similar to itself, before and after purification.
    assert torch.allclose(result.similarity_purified.diagonal(), torch.ones(196))
    assert np.isclose(float(result.similarity_raw.diagonal().min()), 1.0)
