"""Images of any aspect ratio are segmented, thinner than one patch included."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfp.apis import segment_images

from .conftest import TINY_CKPT


@pytest.mark.parametrize('slide_crop', [224, 0])
@pytest.mark.parametrize('shape', [(7, 300), (300, 5), (3, 9)])
def test_thin_image_is_the_padded_image_cut_back(make_segmentor, slide_crop, shape):
    segmentor = make_segmentor(slide_crop=slide_crop, prob_thd=0.0, area_thd=None)
    thin = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0)).double()
    height, width = max(shape[0], 16), max(shape[1], 16)
    padded = F.pad(thin, (0, width - shape[1], 0, height - shape[0]))
    ours = segmentor.inference(thin[None], [dict(ori_shape=shape)])[0]
    expected = segmentor.inference(padded[None], [dict(ori_shape=(height, width))])[0]
    assert ours.shape[-2:] == shape
    assert torch.allclose(ours, expected[:, :shape[0], :shape[1]], rtol=0, atol=1e-12)


@pytest.mark.parametrize('shape', [(1, 300), (300, 1), (2, 2)])
def test_segment_images_of_extreme_aspect(make_segmentor, shape):
    segmentor = make_segmentor(precision='fp32')
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    result = segment_images(segmentor, [image])[0]
    assert tuple(result.pred_sem_seg.data.shape[-2:]) == shape
    assert torch.isfinite(result.seg_logits.data).all()


def test_demo_goes_on_after_a_thin_image(tmp_path):
    import cv2

    from .test_demo import load_demo
    cv2.imwrite(str(tmp_path / 'a_line.png'), np.full((1, 300, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / 'b_column.png'), np.full((300, 1, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / 'c_photo.png'), np.full((40, 50, 3), 30, np.uint8))
    out = tmp_path / 'out'
    assert load_demo().main([str(tmp_path), '--vocab', 'sky,road,car', '--clip-path',
                             str(TINY_CKPT), '--out-dir', str(out), '--device', 'cpu']) == 0
    shapes = {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape
              for p in out.glob('*_labels.png')}
    assert shapes == {'a_line_labels.png': (1, 300), 'b_column_labels.png': (300, 1),
                      'c_photo_labels.png': (40, 50)}
