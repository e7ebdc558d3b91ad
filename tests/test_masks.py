"""The masks stage: region maps, both releases' file formats, sources, and how the
segmentor hands a method each crop's regions (against PyTorch's own nearest resize)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample

import sfp
from sfp.masks import (
    MaskFileError,
    MaskFolder,
    RegionMasks,
    build_mask_source,
    mask_file_name,
    read_mask_file,
    write_mask_file,
)

from .conftest import TINY_CKPT


def random_labels(size, seed=0, regions=5):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, regions + 1, size, generator=generator)


def torch_nearest(x, size):
    """What both releases do: F.interpolate(masks.float(), mode='nearest')."""
    return F.interpolate(x[None, None].float(), size=size, mode='nearest')[0, 0].long()


@pytest.mark.parametrize('size_in, size_out', [((426, 640), (336, 505)), ((7, 5), (14, 10)),
                                               ((333, 500), (336, 504)), ((5, 9), (5, 9))])
def test_resize_is_pytorchs_nearest(size_in, size_out):
    labels = random_labels(size_in, regions=20)
    got = RegionMasks.from_label_map(labels).resized(size_out)
    assert torch.equal(got.label_map(), torch_nearest(labels, size_out))
    layers = RegionMasks.from_layers(labels[None] == torch.arange(1, 21).view(-1, 1, 1))
    assert torch.equal(layers.resized(size_out).label_map(), torch_nearest(labels, size_out))


def test_overlapping_layers_keep_both_masks():
    layers = torch.zeros(2, 3, 4, dtype=torch.bool)
    layers[0, :2, :2] = True
    layers[1, 1:, 1:] = True  # overlaps layer 0 at (1, 1)
    regions = RegionMasks.from_layers(layers)
    assert regions.label_map().tolist() == [[1, 1, 0, 0], [1, 1, 2, 2], [0, 2, 2, 2]]
    assert torch.equal(regions.masks(), layers)
    assert regions.unsegmented().sum() == 3


def test_lavg_file_format(tmp_path):
    layers = torch.zeros(2, 6, 7, dtype=torch.bool)
    layers[0, :3] = True
    layers[1, 2:4, 2:] = True
    path = tmp_path / 'img.pth'
    write_mask_file(path, RegionMasks.from_layers(layers), 'lavg')
    stack = torch.load(path, weights_only=True)  # as LaVG's stage 2 reads it
    assert stack.dtype == torch.uint8 and stack.shape == (3, 6, 7)
    assert set(stack[:2].unique().tolist()) == {0, 255}
    assert torch.equal(stack[2], (stack[:2].sum(0) == 0).to(torch.uint8))
    assert torch.equal(read_mask_file(path, 'lavg').masks(), layers)
    torch.save(torch.cat([stack[:2], torch.ones_like(stack[:1])]), tmp_path / 'bad.pth')
    with pytest.raises(MaskFileError, match='bad.pth: its last layer is not the background'):
        read_mask_file(tmp_path / 'bad.pth', 'lavg')


def test_corrclip_file_format(tmp_path):
    labels = random_labels((9, 11)) * 7  # ids 0, 7, 14, ...: kept as they are
    path = tmp_path / 'img.npz'
    write_mask_file(path, RegionMasks.from_label_map(labels), 'corrclip')
    with np.load(path) as data:  # as CorrCLIP reads it
        assert np.array_equal(data['instance_mask'], labels.numpy())
    assert torch.equal(read_mask_file(path, 'corrclip').label_map(), labels)
    np.savez(tmp_path / 'other.npz', mask=labels.numpy())
    with pytest.raises(MaskFileError, match='no array instance_mask'):
        read_mask_file(tmp_path / 'other.npz', 'corrclip')


def test_file_names_follow_each_release():
    assert mask_file_name('data/VOC/2007_000033.jpg', 'lavg') == '2007_000033.pth'
    assert mask_file_name('a/b.c.png', 'lavg') == 'b.pth'  # up to the first '.'
    assert mask_file_name('a/b.c.png', 'corrclip') == 'b.c.npz'  # Path.stem


def test_folder_errors_are_one_line(tmp_path):
    write_mask_file(tmp_path / 'a.npz', RegionMasks.from_label_map(random_labels((4, 5))),
                    'corrclip')
    source = build_mask_source(str(tmp_path))
    assert isinstance(source, MaskFolder)
    assert source('x/a.jpg', (4, 5)).size == (4, 5)
    with pytest.raises(MaskFileError) as err:
        source('x/missing.jpg', (4, 5))
    assert str(err.value) == (f'no mask file missing.pth or missing.npz in {tmp_path} for '
                              f'image x/missing.jpg')
    with pytest.raises(ValueError, match=r'a.npz: its region map is 4 x 5 \(H x W\) but the '
                                         r'image is 8 x 5'):
        source('x/a.jpg', (8, 5))
    with pytest.raises(MaskFileError, match='neither a folder nor a mask generator'):
        build_mask_source(str(tmp_path / 'nowhere'))


@pytest.fixture(scope='module')
def segmentor_with_masks(tmp_path_factory):
    folder = tmp_path_factory.mktemp('masks')
    for name, size in (('a', (50, 75)), ('b', (61, 40))):
        write_mask_file(folder / f'{name}.pth',
                        RegionMasks.from_label_map(random_labels(size, seed=len(name + str(size)))),
                        'lavg')
    seg = sfp.SFPSegmentor(clip_path=str(TINY_CKPT), name_path=[['sky'], ['cat'], ['dog']],
                           encoder=dict(type='SCLIPEncoder'), device='cpu', precision='fp64',
                           slide_crop=32, slide_stride=24, maskpred_root=str(folder))
    return seg, folder


def test_segmentor_hands_each_crop_its_window(segmentor_with_masks, monkeypatch):
    """A method that reads regions gets, per crop, its window of the map resized with the
    image (PyTorch's nearest, as the releases), and the whole map at ori_shape."""
    seg, folder = segmentor_with_masks
    seen = []
    encode = seg.encoder.forward

    def recording(images, contexts=None, regions=None):
        seen.extend((tuple(img.shape[-2:]), r) for img, r in zip(images, regions))
        return encode(images, contexts)

    monkeypatch.setattr(seg.encoder, 'uses_masks', True)
    monkeypatch.setattr(seg.encoder, 'forward', recording)
    inputs = [torch.randn(3, 40, 60, dtype=torch.float64), torch.randn(3, 48, 32,
                                                                      dtype=torch.float64)]
    samples = [SegDataSample(metainfo=dict(img_path=f'images/{n}.jpg', ori_shape=s))
               for n, s in (('a', (50, 75)), ('b', (61, 40)))]
    regions = seg.image_regions(inputs, [s.metainfo for s in samples])
    seg.slide_maps(inputs, regions)
    for image, sample, region in zip(inputs, samples, regions):
        original = read_mask_file(folder / f'{sample.img_path.split("/")[1][0]}.pth',
                                  'lavg').label_map()
        assert torch.equal(region.original.label_map(), original)
        resized = torch_nearest(original, image.shape[-2:])
        windows = sfp.models.sliding_windows(*image.shape[-2:], 32, 24)
        for y1, y2, x1, x2 in windows:
            expected = resized[y1:y2, x1:x2]
            assert any(size == tuple(expected.shape) and torch.equal(r.label_map(), expected)
                       for size, r in seen)
    assert len(seen) == sum(len(sfp.models.sliding_windows(*img.shape[-2:], 32, 24))
                            for img in inputs)
    out = seg.predict(torch.stack([inputs[0]]), samples[:1])[0]
    assert out.pred_sem_seg.data.shape[-2:] == (50, 75)
    with pytest.raises(MaskFileError, match='no mask file c.pth or c.npz in'):
        seg.predict(inputs[0][None], [SegDataSample(metainfo=dict(img_path='c.jpg',
                                                                  ori_shape=(40, 60)))])


def test_mask_folder_names_must_agree():
    with pytest.raises(ValueError, match='maskpred_root and instance_mask_path name different'):
        sfp.SFPSegmentor(clip_path=str(TINY_CKPT), name_path=[['cat']], device='cpu',
                         maskpred_root='a', instance_mask_path='b')
