"""tools/demo.py on real and odd images: outputs at each image's size, never lost."""
import importlib.util
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sfp.apis import as_bgr_uint8, prepare_image, resolve_vocabulary, segment_images
from sfp.datasets import read_image
from sfp.visualization import make_palette

from .conftest import FIXTURES, MEAN, REPO, STD, TINY_CKPT, TINY_DINO


def load_demo():
    """tools/demo.py as a module."""
    spec = importlib.util.spec_from_file_location('demo_tool', REPO / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo():
    return load_demo()


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


def test_odd_images_give_outputs_of_their_own_size(demo, tmp_path, capsys):
    images = tmp_path / 'images'
    images.mkdir()
    sizes = odd_images(images)
    (images / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    out = tmp_path / 'out'
    code = demo.main([str(images), '--vocab', 'sky,person|people,dog', '--clip-path',
                      str(TINY_CKPT), '--out-dir', str(out), '--device', 'cpu'])
    assert code == 1  # the broken image is reported, the others are done
    err = capsys.readouterr().err
    broken = str((images / 'broken.jpg').resolve())
    assert err.count(broken) == 1 and f'cannot decode image {broken}' in err  # said once
    # The tests' random weights are said to be such, once for the whole run.
    assert err.count("the tests' random weights, not a trained model") == 1
    assert str(TINY_CKPT) in err
    for name, size in sizes.items():
        stem = name.rsplit('.', 1)[0]
        labels = cv2.imread(str(out / f'{stem}_labels.png'), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f'{stem}_overlay.png'))
        assert labels.shape == size, name
        assert labels.max() < 3
        assert overlay.shape[0] >= size[0] and overlay.shape[1] > size[1]  # + legend panel
    assert not (out / 'broken_labels.png').exists()


def test_rerun_keeps_only_matching_earlier_results(demo, tmp_path, capsys):
    out = tmp_path / 'out'
    image = FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png'
    args = [str(image), '--clip-path', str(TINY_CKPT), '--out-dir', str(out), '--device', 'cpu']
    assert demo.main(args + ['--vocab', 'camvid']) == 0
    first = (out / '0016E5_07959_labels.png').read_bytes()
    capsys.readouterr()
    assert demo.main(args + ['--vocab', 'camvid']) == 0  # same image, same settings: kept
    assert '0 image(s) segmented' in capsys.readouterr().out
    assert (out / '0016E5_07959_labels.png').read_bytes() == first
    # Another vocabulary: the earlier outputs are neither kept as current nor replaced.
    assert demo.main(args + ['--vocab', 'road,sky,car']) == 1
    captured = capsys.readouterr()
    assert 'kept from an earlier run' not in captured.out
    assert 'another image or other settings' in captured.err
    assert (out / '0016E5_07959_labels.png').read_bytes() == first
    # A file the demo did not write is not taken for a result either.
    (out / '0016E5_07959_labels.png').write_bytes(b'earlier')
    assert demo.main(args + ['--vocab', 'camvid', '--prob-thd', '0.5']) == 1
    assert (out / '0016E5_07959_labels.png').read_bytes() == b'earlier'
    assert demo.main(args + ['--vocab', 'road,sky,car', '--overwrite']) == 0
    labels = cv2.imread(str(out / '0016E5_07959_labels.png'), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (360, 480) and labels.max() <= 2


def test_same_stems_get_distinct_outputs(demo, tmp_path):
    source = FIXTURES / 'data' / 'camvid' / 'val'
    for folder in ('a', 'b', 'b/deeper'):
        (tmp_path / 'in' / folder).mkdir(parents=True)
    (tmp_path / 'in' / 'a' / 'img.png').write_bytes((source / '0016E5_07959.png').read_bytes())
    (tmp_path / 'in' / 'b' / 'img.png').write_bytes((source / '0016E5_07961.png').read_bytes())
    cv2.imwrite(str(tmp_path / 'in' / 'b' / 'img.jpg'),
                cv2.imread(str(source / '0016E5_07963.png')))
    (tmp_path / 'in' / 'b' / 'deeper' / 'c.png').write_bytes(
        (source / '0016E5_07965.png').read_bytes())
    out = tmp_path / 'out'
    assert demo.main([str(tmp_path / 'in'), '--vocab', 'camvid', '--clip-path', str(TINY_CKPT),
                      '--out-dir', str(out), '--device', 'cpu']) == 0  # subfolders searched
    written = sorted(p.name for p in out.glob('*_labels.png'))
    assert written == ['a_img_labels.png', 'b_img_jpg_labels.png', 'b_img_png_labels.png',
                       'c_labels.png']


def test_empty_folder_says_why(demo, tmp_path, capsys):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'notes.txt').write_text('no image here')
    assert demo.main([str(tmp_path / 'docs')]) == 2
    assert 'holds no image' in capsys.readouterr().err


def test_preset_brings_the_released_setting_and_names(demo):
    from mmengine.config import Config
    model = Config.fromfile(str(REPO / 'configs' / 'sfp' / 'sfp_vit-b16_voc21.py')).model
    classes, names, settings = demo.resolve_settings(demo.parse_args(['x.jpg']))
    assert {k: settings[k] for k in ('logit_scale', 'prob_thd', 'area_thd', 'short_side')} == \
        dict(logit_scale=model.logit_scale, prob_thd=model.prob_thd, area_thd=model.area_thd,
             short_side=336)
    assert names[0] == 'background' and classes[0][0] == 'sky'
    _, _, ade = demo.resolve_settings(demo.parse_args(['x.jpg', '--vocab', 'ade20k',
                                                       '--prob-thd', '0.2']))
    assert (ade['logit_scale'], ade['prob_thd'], ade['short_side']) == (40, 0.2, 384)
    naclip = Config.fromfile(str(REPO / 'configs' / 'naclip' / 'naclip_vit-b16_voc21.py'))
    _, _, released = demo.resolve_settings(demo.parse_args(['x.jpg', '--method', 'naclip']))
    for key in ('encoder', 'slide_crop', 'pamr_steps', 'prob_thd', 'purify'):
        assert released[key] == naclip.model[key], key
    _, _, purified = demo.resolve_settings(demo.parse_args(
        ['x.jpg', '--method', 'sclip', '--vocab', 'a,b', '--purify', '--pm', 'LOF']))
    assert (purified['purify'], purified['pm'], purified['encoder']['type']) == \
        (True, 'LOF', 'SCLIPEncoder')
    _, _, trident = demo.resolve_settings(demo.parse_args(
        ['x.jpg', '--method', 'trident', '--vocab', 'ade20k', '--sam-path', 'sam.pth']))
    assert (trident['sam_path'], trident['vfm_path'], trident['short_side']) == \
        ('sam.pth', 'dino_vitb16', 576)
    assert trident['encoder']['refine_neg_cos'] is False


def test_demo_runs_a_baseline_and_names_unknown_methods(demo, tmp_path, capsys):
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    args = [image, '--clip-path', str(TINY_CKPT), '--device', 'cpu', '--vocab', 'voc21']
    assert demo.main(args + ['--method', 'naclp', '--out-dir', str(tmp_path / 'x')]) == 2
    assert "unknown method 'naclp' (did you mean 'naclip'?)" in capsys.readouterr().err
    assert demo.main(args + ['--method', 'naclip', '--out-dir', str(tmp_path / 'n')]) == 0
    labels = cv2.imread(str(tmp_path / 'n' / '0016E5_07959_labels.png'), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (360, 480) and labels.max() <= 20


def test_demo_runs_a_method_with_a_vision_foundation_model(demo, tmp_path, capsys):
    from sfp.apis import init_segmentor
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    dino = str(TINY_DINO)
    args = [image, '--clip-path', str(TINY_CKPT), '--device', 'cpu', '--vocab', 'road,sky,car']
    assert demo.main(args + ['--method', 'proxyclip', '--vfm-path', dino,
                             '--out-dir', str(tmp_path / 'p')]) == 0
    labels = cv2.imread(str(tmp_path / 'p' / '0016E5_07959_labels.png'), cv2.IMREAD_UNCHANGED)
    segmentor = init_segmentor(str(TINY_CKPT), 'road,sky,car', device='cpu',
                               method='proxyclip', vfm_path=dino)
    expected = segment_images(segmentor, [read_image(image)], 336)[0]
    np.testing.assert_array_equal(labels, expected.pred_sem_seg.data[0].numpy())
    assert demo.main(args + ['--method', 'proxyclip', '--vfm-path', str(tmp_path / 'no.pth'),
                             '--out-dir', str(tmp_path / 'q')]) == 2
    assert f'no VFM checkpoint at {tmp_path / "no.pth"}' in capsys.readouterr().err
    assert demo.main(args + ['--vfm-path', dino, '--out-dir', str(tmp_path / 's')]) == 2
    assert '--vfm-path is set, but SFPEncoder reads no vision foundation model' in \
        capsys.readouterr().err


def test_demo_runs_cass_with_its_released_voc_setting(demo, tmp_path):
    """CASS's VOC21 preset (whole image, its own thresholds and text constants) through
    the command, as sfp.apis gives it."""
    from sfp.apis import init_segmentor, load_preset
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    dino = str(TINY_DINO)
    assert demo.main([image, '--clip-path', str(TINY_CKPT), '--device', 'cpu', '--vocab',
                      'voc21', '--method', 'cass', '--vfm-path', dino,
                      '--out-dir', str(tmp_path)]) == 0
    labels = cv2.imread(str(tmp_path / '0016E5_07959_labels.png'), cv2.IMREAD_UNCHANGED)
    preset = load_preset('voc21', 'cass')
    assert preset.model_kwargs['slide_crop'] == 0 and preset.model_kwargs['prob_thd'] == 0.1
    segmentor = init_segmentor(str(TINY_CKPT), 'voc21', device='cpu', method='cass',
                               vfm_path=dino)
    expected = segment_images(segmentor, [read_image(image)], preset.short_side)[0]
    np.testing.assert_array_equal(labels, expected.pred_sem_seg.data[0].numpy())


@pytest.mark.parametrize('word,nearest', [('voc12', 'voc21'), ('ADE20K', 'ade20k'),
                                          ('cityscape', 'cityscapes')])
def test_misspelt_preset_is_not_a_one_class_vocabulary(demo, word, nearest, capsys):
    with pytest.raises(ValueError, match=f"has one class.*did you mean '{nearest}'"):
        resolve_vocabulary(word)
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    assert demo.main([image, '--vocab', word, '--clip-path', str(TINY_CKPT)]) == 2
    err = capsys.readouterr().err
    assert 'voc21, context60' in err and 'camvid' in err


def test_palette_colours_are_distinct_and_visible():
    for n in (2, 21, 150, 171):
        palette = make_palette(n).astype(int)
        assert len({tuple(c) for c in palette}) == n
        assert palette.max(1).min() >= 140  # no dark colour, class 0 included
        assert (palette.max(1) - palette.min(1)).min() >= 60  # no grey or white
        gaps = np.sqrt(((palette[:, None] - palette[None]) ** 2).sum(-1))
        assert gaps[~np.eye(n, dtype=bool)].min() >= 40
    assert (make_palette(21) == make_palette(150)[:21]).all()


def test_demo_errors(demo, tmp_path, capsys):
    assert demo.main([str(tmp_path / 'none*.jpg')]) == 2
    assert 'no image file, folder or glob match' in capsys.readouterr().err
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    assert demo.main([image, '--clip-path', 'ViT-Q/7']) == 2
    assert 'unknown CLIP model' in capsys.readouterr().err
    assert demo.main([image, '--vocab', 'missing/classes.txt']) == 2
    assert 'class-name file not found' in capsys.readouterr().err


def test_offline_error_names_the_demos_flag(demo, monkeypatch, capsys):
    from sfp.clip import loader
    monkeypatch.setattr(loader, '_BASE_URL', 'http://127.0.0.1:9/clip')  # refused at once
    image = str(FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png')
    assert demo.main([image, '--clip-path', 'ViT-B/16']) == 2
    err = capsys.readouterr().err
    assert 'could not be downloaded' in err and 'pass the file path as --clip-path' in err
    assert 'clip_path' not in err


def test_help_lists_every_preset_and_method(demo, capsys):
    """--help's lists come from the registries: a new method or preset shows up there."""
    from sfp.apis import PRESETS, available_methods, method_vfm
    with pytest.raises(SystemExit):
        demo.parse_args(['--help'])
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split(': ', 1)[0]: line.split(': ', 1)[1] for line in lines
              if line.startswith(('presets: ', 'methods: ', 'methods that also'))}
    assert listed['presets'].split(', ') == list(PRESETS)
    assert listed['methods'].split(', ') == available_methods()
    vfm = listed['methods that also read a vision foundation model (default)'].split(', ')
    assert vfm == [f'{m} ({method_vfm(m)})' for m in available_methods() if method_vfm(m)]
    assert {'resclip', 'cass'} <= set(available_methods())


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


def test_api_converts_or_refuses_arrays():
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    assert (as_bgr_uint8(bgr) == bgr).all()
    gray = bgr[:, :, 0]
    assert (as_bgr_uint8(gray) == np.dstack([gray] * 3)).all()
    assert (as_bgr_uint8(gray[:, :, None]) == np.dstack([gray] * 3)).all()
    bgra = np.dstack([bgr, np.full_like(gray, 7)])
    assert (as_bgr_uint8(bgra) == bgr).all()
    assert (as_bgr_uint8(bgr.astype(np.uint16) * 257) == bgr).all()
    assert (as_bgr_uint8(bgr / 255.0) == bgr).all()
    for bad, message in [(bgr * 1.0, r'values in \[0, 1\]'), (bgr[:, :, :2], 'shape'),
                         (bgr.astype(np.int64), 'dtype int64'), ([[1, 2]], 'list'),
                         (np.zeros((0, 4, 3), np.uint8), 'shape')]:
        with pytest.raises((ValueError, TypeError), match=message):
            as_bgr_uint8(bad, 'photo')


def test_segment_images_takes_gray_and_float(make_segmentor):
    segmentor = make_segmentor(name_path=[['sky'], ['road'], ['car']], precision='fp32',
                               area_thd=None, prob_thd=0.0)
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    gray = bgr[:, :, 1]
    as_gray, as_bgr = segment_images(segmentor, [gray, np.dstack([gray] * 3)])
    assert torch.equal(as_gray.pred_sem_seg.data, as_bgr.pred_sem_seg.data)
    assert torch.equal(as_gray.seg_logits.data, as_bgr.seg_logits.data)
    as_float = segment_images(segmentor, [bgr / 255.0])[0]
    as_uint8 = segment_images(segmentor, [bgr])[0]
    assert torch.equal(as_float.seg_logits.data, as_uint8.seg_logits.data)
