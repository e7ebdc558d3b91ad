"""The web demo's logic without a browser: vocabulary, tables, drawings, bad uploads,
results checked against ``segment_images`` on the same input."""
import gc
import importlib.util
import threading

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sfp import webui
from sfp.analysis import analyze_image
from sfp.apis import init_segmentor, method_vfm, resolve_vocabulary, segment_images
from sfp.clip import loader
from sfp.datasets import read_image
from sfp.visualization import add_legend, make_palette, overlay
from sfp.webui import (
    InputError,
    Settings,
    WebDemo,
    analysis_crop,
    attention_panels,
    available_detectors,
    available_methods,
    class_shares,
    display_size,
    draw_outliers,
    parse_vocabulary,
)

from .conftest import CLASSNAMES, FIXTURES, REPO, TINY_CKPT, TINY_DINO, TINY_SAM

CAMVID_IMAGE = FIXTURES / 'data' / 'camvid' / 'val' / '0016E5_07959.png'


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return WebDemo(str(TINY_CKPT), device='cpu', precision='fp32',
                   output_dir=tmp_path_factory.mktemp('webui_out'), vfm_path=str(TINY_DINO),
                   sam_path=str(TINY_SAM))


def reference_labels(image_path, settings: Settings) -> np.ndarray:
    """What sfp.apis gives for the same image and settings, from a segmentor of its own."""
    vfm = dict(vfm_path=str(TINY_DINO)) if method_vfm(settings.method) else {}
    segmentor = init_segmentor(str(TINY_CKPT), parse_vocabulary(settings.vocabulary),
                               device='cpu', precision='fp32', method=settings.method, **vfm,
                               pm=settings.pm, purify=settings.purify,
                               logit_scale=settings.logit_scale,
                               prob_thd=settings.prob_thd, area_thd=settings.area_thd or None)
    return segment_images(segmentor, [read_image(image_path)],
                          settings.short_side)[0].pred_sem_seg.data[0].numpy()


def test_vocabulary_presets_lists_and_lines():
    assert parse_vocabulary('voc21') == resolve_vocabulary(CLASSNAMES / 'cls_voc21.txt')
    assert parse_vocabulary(' sky, person|people ,dog ') == [['sky'], ['person', 'people'],
                                                              ['dog']]
    assert parse_vocabulary('sky\nperson, people\ndog|puppy\n') == [
        ['sky'], ['person', 'people'], ['dog', 'puppy']]


def test_vocabulary_mistakes_are_explained(tmp_path):
    with pytest.raises(InputError, match='enter a vocabulary'):
        parse_vocabulary('  ')
    with pytest.raises(InputError, match='line 2 is empty'):
        parse_vocabulary('sky,,dog')
    with pytest.raises(InputError, match='at most 256 classes'):
        parse_vocabulary(','.join(f'thing{i}' for i in range(300)))
    secret = tmp_path / 'classes.txt'
    secret.write_text('private\n')
    # the page never reads files: a path is just an (odd) class name
    assert parse_vocabulary(str(secret)) == [[str(secret)]]


def test_class_shares_by_hand():
    labels = np.array([[2, 2, 0], [2, 1, 1]])
    shares = class_shares(labels, ['a', 'b', 'c', 'd'])
    assert [(s.name, s.pixels) for s in shares] == [('c', 3), ('b', 2), ('a', 1)]
    assert [s.percent for s in shares] == pytest.approx([50, 100 / 3, 100 / 6])


def test_outliers_are_outlined_on_their_patch():
    image = np.full((8, 12, 3), 7, np.uint8)
    marked = draw_outliers(image, [(1, 2)], (4.0, 4.0), colour=(255, 0, 0))
    changed = np.argwhere((marked != image).any(axis=2))
    assert changed[:, 0].min() == 4 and changed[:, 0].max() == 7   # rows of patch row 1
    assert changed[:, 1].min() == 8 and changed[:, 1].max() == 11  # cols of patch col 2
    assert (marked[4, 8] == (255, 0, 0)).all() and (marked[5, 9] == 7).all()  # outline only


def test_attention_panels_by_hand():
    attention = torch.zeros(3, 2, 4)
    attention[0, 1, 3] = 0.5                      # block 1: one bright patch
    sheet = attention_panels(attention, [(0, 0)], detect_block=2, tile_width=40)
    viridis = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_VIRIDIS)[0]
    dark, bright = viridis[0, ::-1], viridis[1, ::-1]
    top = 16                                      # below the caption
    np.testing.assert_array_equal(sheet[top + 15, 35], bright)  # patch (1, 3) of block 1
    np.testing.assert_array_equal(sheet[top + 5, 5], dark)
    second = 40 + 4                               # block 2, the detection block: flat,
    np.testing.assert_array_equal(sheet[top, second], (255, 0, 0))  # outlier (0, 0) outlined
    np.testing.assert_array_equal(sheet[top + 5, second + 5], dark)
    assert sheet.shape[1] == 4 * 44 and (sheet[top:, 3 * 44:] == 255).all()  # 3 of 4 tiles


def test_analysis_crop_bounds_the_patches():
    assert analysis_crop(336, 448, 16) is None                  # 21 x 28 patches: all of it
    assert analysis_crop(336, 2016, 16) == 48 * 16              # 21 x 48 of 21 x 126
    assert analysis_crop(1024, 1360, 16) == 32 * 16             # a 32 x 32 square
    assert analysis_crop(336, 2016, 16, max_patches=21 * 126) is None


def test_panorama_outliers_come_from_its_centre(demo, tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / 'panorama.png'
    Image.fromarray(cv2.resize(rng.integers(0, 255, (20, 120, 3), dtype=np.uint8),
                               (2400, 400), interpolation=cv2.INTER_NEAREST)).save(path)
    settings = Settings(vocabulary='sky,sea,sand')
    result = demo.run(str(path), settings)
    labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels, reference_labels(path, settings))
    assert 'in the central 768x336 of the resized 2016x336' in result.summary
    shown = result.outliers.shape[1]                            # 1024 of 2400 pixels
    columns = np.flatnonzero((result.outliers != cv2.resize(
        read_image(path)[:, :, ::-1], (shown, result.outliers.shape[0]),
        interpolation=cv2.INTER_AREA)).any(axis=(0, 2)))
    centre = ((2016 - 768) // 2 * shown / 2016, (2016 + 768) // 2 * shown / 2016)
    assert columns.size and centre[0] <= columns.min() and columns.max() <= centre[1]


def test_display_size_keeps_the_aspect_ratio():
    assert display_size(2448, 3264) == (768, 1024)
    assert display_size(300, 1) == (300, 1)


def test_page_result_matches_segment_images(demo):
    settings = Settings(vocabulary='road,sky,building|house,tree,car', logit_scale=50,
                        prob_thd=0.1, attention=True)
    result = demo.run(str(CAMVID_IMAGE), settings)
    expected = reference_labels(CAMVID_IMAGE, settings)
    labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels, expected)
    names = ['road', 'sky', 'building', 'tree', 'car']
    counts = np.bincount(expected.ravel(), minlength=5)
    assert {s.name: s.pixels for s in result.shares} == {
        names[c]: int(counts[c]) for c in np.flatnonzero(counts)}
    palette = make_palette(5)
    image_rgb = read_image(CAMVID_IMAGE)[:, :, ::-1]
    present = [s.index for s in result.shares]
    np.testing.assert_array_equal(result.overlay, add_legend(
        overlay(image_rgb, expected, palette), names, palette, present))
    # the outlier picture is the image with exactly the detector's patches outlined
    analysis = analyze_image(init_segmentor(str(TINY_CKPT), [[n] for n in names],
                                            device='cpu', precision='fp32'),
                             read_image(CAMVID_IMAGE), detectors=['SOM'], crop=None)
    scale = image_rgb.shape[0] / analysis.crop.shape[0]
    changed = (result.outliers != image_rgb).any(axis=2)
    outlined = np.zeros_like(changed)
    for row, col in analysis.outliers['SOM']:
        y, x = int(row * 16 * scale), int(col * 16 * scale)
        outlined[y:y + int(16 * scale) + 1, x:x + int(16 * scale) + 1] = True
    assert changed.any() and not (changed & ~outlined).any()
    assert result.attention is not None and result.attention.shape[2] == 3
    assert '5 classes' in result.summary and 'SOM' in result.summary


@pytest.mark.parametrize('method', ['clip', 'maskclip', 'clearclip', 'sclip', 'naclip',
                                    'scclip', 'cliptrase', 'proxyclip', 'resclip', 'cass'])
def test_every_method_matches_segment_images(demo, method):
    settings = Settings(vocabulary='road,sky,tree,car', method=method, purify=False,
                        attention=True)
    result = demo.run(str(CAMVID_IMAGE), settings)
    labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels, reference_labels(CAMVID_IMAGE, settings))
    assert f'with {method} ' in result.summary and result.attention is not None


@pytest.mark.parametrize('purify', [True, False])
def test_every_detector_with_and_without_purification(demo, purify):
    for pm in available_detectors():
        settings = Settings(vocabulary='road,sky,tree', pm=pm, purify=purify)
        result = demo.run(str(CAMVID_IMAGE), settings)
        labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels, reference_labels(CAMVID_IMAGE, settings), pm)
        assert f'found by {pm}' in result.summary
        assert ('not mitigated' in result.summary) == (not purify)


def test_vocabulary_change_reuses_the_loaded_clip(demo):
    first = demo.segmentor([['cat'], ['dog']], Settings())
    second = demo.segmentor([['sky'], ['sea'], ['sand']], Settings(prob_thd=0.3))
    assert first.encoder.visual is demo.clip.visual is second.encoder.visual
    assert second.class_names == ['sky', 'sea', 'sand'] and second.prob_thd == 0.3
    # thresholds live on the request's copy only
    assert demo.segmentor([['sky'], ['sea'], ['sand']], Settings()).prob_thd == 0


def test_the_vfm_is_loaded_once_for_every_vocabulary(demo):
    first = demo.segmentor([['cat'], ['dog']], Settings(method='proxyclip'))
    second = demo.segmentor([['sky'], ['sea'], ['sand']], Settings(method='proxyclip'))
    assert first.encoder.vfm is second.encoder.vfm is demo.vfm('proxyclip')
    assert list(demo._vfms) == [str(TINY_DINO)] and demo.vfm('sfp') is None
    assert first.encoder.visual is demo.clip.visual


def test_trident_shares_its_sam_and_dino(demo):
    first = demo.segmentor([['cat'], ['dog']], Settings(method='trident'))
    second = demo.segmentor([['sky'], ['sea'], ['sand']], Settings(method='trident'))
    assert first.encoder.sam is second.encoder.sam is demo.sam('trident')
    assert first.encoder.vfm is demo.vfm('proxyclip') and demo.sam('proxyclip') is None
    assert first.encoder.visual is demo.clip.visual


def test_methods_reading_one_vfm_share_it(demo):
    proxyclip = demo.segmentor([['cat'], ['dog']], Settings(method='proxyclip'))
    cass = demo.segmentor([['cat'], ['dog']], Settings(method='cass'))
    assert cass.encoder.vfm is proxyclip.encoder.vfm is demo.vfm('cass')
    assert cass.encoder.visual is demo.clip.visual


def test_missing_vfm_says_which_file_to_place_where(monkeypatch, isolated_cache):
    from sfp.vfm import DINO_MODELS
    url = 'http://127.0.0.1:9/dino/dino_vitbase8_pretrain.pth'  # refused at once
    monkeypatch.setitem(DINO_MODELS, 'dino_vitb8', type(DINO_MODELS['dino_vitb8'])(url))
    page = WebDemo(str(TINY_CKPT), device='cpu')
    assert page.banner()[0] == 'warning'  # CLIP is there; the VFM is loaded when asked for
    with pytest.raises(InputError, match='proxyclip reads a vision foundation model, which '
                                         'could not be loaded: dino_vitb8 is not in the cache'
                                         '.*place it at .*dino_vitbase8_pretrain.pth'):
        page.run(str(CAMVID_IMAGE), Settings(method='proxyclip'))
    assert page.run(str(CAMVID_IMAGE), Settings(vocabulary='road,sky')).summary


def odd_upload(kind, folder):
    """Write an upload of one awkward kind; return its path."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = folder / {'text': 'notes.jpg', 'corrupt': 'broken.jpg', 'thin': 'thin.png',
                     'deep16': 'deep16.png', 'cmyk': 'cmyk.jpg', 'rotated': 'rotated.jpg',
                     'huge': 'huge.jpg', 'bomb': 'bomb.png', 'empty': 'empty.png',
                     'gray': 'gray.png', 'megabomb': 'megabomb.png'}[kind]
    if kind == 'text':
        path.write_text('this is not an image\n')
    elif kind == 'corrupt':
        path.write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF' + bytes(range(256)) * 4)
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'thin':
        Image.fromarray(rgb[:1, :48].repeat(7, axis=1)[:, :300]).save(path)
    elif kind == 'gray':
        Image.fromarray(rgb[:, :, 1]).save(path)
    elif kind == 'deep16':
        cv2.imwrite(str(path), rgb.astype(np.uint16) * 257)
    elif kind == 'cmyk':
        Image.fromarray(rgb).convert('CMYK').save(path, quality=95)
    elif kind == 'rotated':
        exif = Image.Exif()
        exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
        Image.fromarray(rgb).save(path, exif=exif)
    elif kind == 'huge':  # 8 megapixels
        Image.fromarray(cv2.resize(rgb, (3264, 2448))).save(path, quality=70)
    elif kind == 'bomb':  # 64 megapixels, a few kB on disk
        Image.new('1', (8000, 8000)).save(path)
    elif kind == 'megabomb':  # 225 megapixels: beyond Pillow's own limit too
        Image.new('1', (15000, 15000)).save(path)
    return path


@pytest.mark.parametrize('kind, message', [
    ('text', 'cannot decode image notes.jpg'), ('corrupt', 'cannot decode image broken.jpg'),
    ('empty', 'cannot decode image empty.png'), ('thin', 'thinner than one 16-pixel patch'),
    ('bomb', 'more than 50 megapixels'), ('megabomb', 'more than 50 megapixels')])
def test_bad_uploads_get_a_message(demo, tmp_path, kind, message):
    with pytest.raises(InputError, match=message):
        demo.run(str(odd_upload(kind, tmp_path)), Settings(vocabulary='sky,dog'))


@pytest.mark.parametrize('kind, size', [('gray', (48, 64)), ('deep16', (48, 64)),
                                        ('cmyk', (48, 64)),
                                        ('rotated', (64, 48)), ('huge', (2448, 3264))])
def test_awkward_uploads_are_segmented(demo, tmp_path, kind, size):
    path = odd_upload(kind, tmp_path)
    settings = Settings(vocabulary='sky,dog,grass')
    result = demo.run(str(path), settings)
    labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
    assert labels.shape == size
    np.testing.assert_array_equal(labels, reference_labels(path, settings))
    shown = display_size(*size)
    assert result.outliers.shape[:2] == shown and result.overlay.shape[0] >= shown[0]
    assert sum(s.pixels for s in result.shares) == size[0] * size[1]


def test_bad_settings_are_refused(demo):
    with pytest.raises(InputError, match="method 'maskclp' is not available; choose from "
                                         "cass, clearclip, clip, cliptrase, corrclip, lavg, "
                                         "lposs, maskclip, naclip, proxyclip, resclip, "
                                         "scclip, sclip, sfp, trident"):
        demo.run(str(CAMVID_IMAGE), Settings(method='maskclp'))
    with pytest.raises(InputError, match='detector .* is unknown'):
        demo.run(str(CAMVID_IMAGE), Settings(pm='nope'))
    with pytest.raises(InputError, match='upload an image'):
        demo.run(None, Settings())


def test_concurrent_requests_do_not_mix(demo):
    requests = [Settings(vocabulary='road,sky,car', prob_thd=0.2),
                Settings(vocabulary='tree|bush,building,person,bicycle', logit_scale=80)]
    results = [None, None]

    def work(i):
        results[i] = demo.run(str(CAMVID_IMAGE), requests[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for result, settings in zip(results, requests):
        labels = cv2.imread(str(result.labels_png), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels, reference_labels(CAMVID_IMAGE, settings))
    assert results[0].labels_png != results[1].labels_png


def test_missing_checkpoint_says_which_file_to_place_where(monkeypatch, isolated_cache):
    monkeypatch.setattr(loader, '_BASE_URL', 'http://127.0.0.1:9/clip')  # refused at once
    offline = WebDemo('ViT-B/16', device='cpu')
    kind, message = offline.banner()
    assert kind == 'error' and str(isolated_cache / 'ViT-B-16.pt') in message
    with pytest.raises(InputError, match='place it at'):
        offline.run(str(CAMVID_IMAGE), Settings())


def test_a_preset_names_its_classes_as_the_dataset(demo):
    """A preset's legend names its dataset's classes ("traffic light"), not their first
    queries ("trafficlight"; VOC's "sky" for its background)."""
    settings = Settings(vocabulary='cityscapes')
    segmentor = demo.segmentor(parse_vocabulary('cityscapes'), settings)
    assert segmentor.class_names[5:8] == ['pole', 'traffic light', 'traffic sign']
    assert demo.segmentor(parse_vocabulary('sky,sea'), Settings(vocabulary='sky,sea')) \
        .class_names == ['sky', 'sea']


def test_random_weights_banner(demo):
    kind, message = demo.banner()
    assert kind == 'warning' and 'random weights' in message


def test_command_lists_the_available_methods(capsys):
    spec = importlib.util.spec_from_file_location('webui_tool', REPO / 'tools' / 'webui.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit):
        tool.parse_args(['--method', 'maskclp'])
    error = capsys.readouterr().err
    assert 'maskclp' in error and all(m in error for m in available_methods())
    assert set(available_methods()) == {'sfp', 'clip', 'maskclip', 'clearclip', 'sclip',
                                        'naclip', 'scclip', 'cliptrase', 'proxyclip', 'resclip',
                                        'cass', 'trident', 'lavg', 'corrclip', 'lposs'}


def test_own_output_folder_goes_with_the_demo():
    own = WebDemo(str(TINY_CKPT), device='cpu')
    result = own.run(str(CAMVID_IMAGE), Settings(vocabulary='sky,road'))
    folder = own.output_dir
    assert result.labels_png.is_file() and result.labels_png.parent.parent == folder
    del own, result
    gc.collect()
    assert not folder.exists()


def test_only_the_latest_label_maps_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(webui, 'REQUESTS_KEPT', 2)
    own = WebDemo(str(TINY_CKPT), device='cpu', output_dir=tmp_path)
    paths = [own.run(str(CAMVID_IMAGE), Settings(vocabulary='sky,road')).labels_png
             for _ in range(3)]
    assert [p.is_file() for p in paths] == [False, True, True]
