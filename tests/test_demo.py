"""tools/demo.py on real and odd images: outputs at each image's size, never lost."""
import importlib.util
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sfp.apis import prepare_image, resolve_vocabulary
from sfp.datasets import read_image

from .conftest import FIXTURES, MEAN, REPO, STD, TINY_CKPT


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('demo_tool', REPO / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def odd_images(folder):
    """Write images of every awkward kind; return {file name: (height, width)}."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    sizes = {}
    Image.fromarray(rgb[:, :, 0]).save(folder / 'gray.png')
    sizes['gray.png'] = (40, 60)
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(folder / 'rgba.png')
    sizes['rgba.png'] = (40, 60)
    cv2.imwrite(str(folder / 'deep16.png'), (rgb.astype(np.uint16) * 257))
    sizes['deep16.png'] = (40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.fromarray(rgb).save(folder / 'rotated.jpg', exif=exif)
    sizes['rotated.jpg'] = (60, 40)
    Image.fromarray(rgb[:9, :13]).save(folder / 'tiny.png')
    sizes['tiny.png'] = (9, 13)
    Image.fromarray(np.tile(rgb, (70, 60, 1))).save(folder / 'huge.jpg', quality=80)
    sizes['huge.jpg'] = (2800, 3600)  # 10 megapixels
    Image.fromarray(rgb).save(folder / 'anim.gif')
    sizes['anim.gif'] = (40, 60)
    return sizes


def test_odd_images_give_outputs_of_their_own_size(demo, tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    sizes = odd_images(images)
    (images / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    out = tmp_path / 'out'
    code = demo.main([str(images), '--vocab', 'sky,person|people,dog', '--clip-path',
                      str(TINY_CKPT), '--out-dir', str(out), '--device', 'cpu'])
    assert code == 1  # the broken image is reported, the others are done
    for name, size in sizes.items():
        stem = name.rsplit('.', 1)[0]
        labels = cv2.imread(str(out / f'{stem}_labels.png'), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f'{stem}_overlay.png'))
        assert labels.shape == size, name
        assert labels.max() < 3
        assert overlay.shape[0] >= size[0] and overlay.shape[1] > size[1]  # + legend panel
    assert not (out / 'broken_labels.png').exists()


def test_rerun_keeps_earlier_results(demo, tmp_path, capsys):
    out = tmp_path / 'out'
    image = FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png'
    args = [str(image), '--vocab', 'camvid', '--clip-path', str(TINY_CKPT), '--out-dir',
            str(out), '--device', 'cpu']
    assert demo.main(args) == 0
    (out / '0016E5_07959_labels.png').write_bytes(b'earlier')
    assert demo.main(args) == 0
    assert (out / '0016E5_07959_labels.png').read_bytes() == b'earlier'
    assert 'kept from an earlier run' in capsys.readouterr().out
    assert demo.main(args + ['--overwrite']) == 0
    assert cv2.imread(str(out / '0016E5_07959_labels.png'), 0).shape == (360, 480)


def test_demo_errors(demo, tmp_path, capsys):
    assert demo.main([str(tmp_path / 'none*.jpg')]) == 2
    assert 'no image file, folder or glob match' in capsys.readouterr().err
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    assert demo.main([image, '--clip-path', 'ViT-Q/7']) == 2
    assert 'unknown CLIP model' in capsys.readouterr().err
    assert demo.main([image, '--vocab', 'missing/classes.txt']) == 2
    assert 'class-name file not found' in capsys.readouterr().err


def test_vocabulary_forms(tmp_path):
    assert resolve_vocabulary('sky, person|people ,car') == [['sky'], ['person', 'people'],
                                                              ['car']]
    assert len(resolve_vocabulary('ade20k')) == 150
    (tmp_path / 'v.txt').write_text('road\ncar, vehicle\n')
    assert resolve_vocabulary(tmp_path / 'v.txt') == [['road'], ['car', 'vehicle']]
    with pytest.raises(ValueError, match='line 2 is empty'):
        resolve_vocabulary('sky,,car')


def test_image_preparation_reproduces_the_golden_input(golden):
    """File -> decode -> resize -> normalise gives the release's input bit for bit."""
    path = FIXTURES / 'data' / 'ADEChallengeData2016' / 'images' / 'validation' / \
        'ADE_val_00000002.jpg'
    index = [m['file'] for m in golden.meta['images']].index('ADE_val_00000002.jpg')
    prepared = prepare_image(read_image(path))
    rgb = prepared.flip(0).float()
    assert torch.equal((rgb - MEAN) / STD, golden.image_input(index))


def test_read_image_exif_and_errors(tmp_path):
    from sfp.datasets import ImageReadError
    rgb = np.zeros((10, 20, 3), np.uint8)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(buffer, 'JPEG', exif=exif)
    (tmp_path / 'r.jpg').write_bytes(buffer.getvalue())
    assert read_image(tmp_path / 'r.jpg').shape == (20, 10, 3)
    with pytest.raises(ImageReadError, match='image not found'):
        read_image(tmp_path / 'missing.png')
    (tmp_path / 'x.png').write_text('text')
    with pytest.raises(ImageReadError, match='cannot decode image .*x.png'):
        read_image(tmp_path / 'x.png')
