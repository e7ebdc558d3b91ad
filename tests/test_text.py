"""Class-name files, templates, query features (golden) and their disk cache."""
import pytest
import torch

from sfp import clip, text

from .conftest import CLASSNAMES, SHARED, TINY_CKPT


@pytest.fixture(scope='module')
def tiny_fp64():
    return clip.load(TINY_CKPT, precision='fp64')


def test_golden_query_features(golden, tiny_fp64):
    features, query_idx = text.build_query_features(tiny_fp64, CLASSNAMES / 'cls_voc21.txt')
    assert query_idx.tolist() == golden.meta['query_idx']
    assert (features - golden.query_features).abs().max() <= 1e-9


def test_class_file_parsing(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_text('background, sky,wall\nperson\n\ncat , kitty\n\n', encoding='utf-8')
    with pytest.raises(ValueError, match='line 3 is empty'):
        text.read_class_names(path)
    path.write_text('background, sky,wall\nperson\ncat , kitty\n\n', encoding='utf-8')
    classes = text.read_class_names(path)
    assert classes == [['background', 'sky', 'wall'], ['person'], ['cat', 'kitty']]
    assert text.flatten_queries(classes) == (
        ['background', 'sky', 'wall', 'person', 'cat', 'kitty'], [0, 0, 0, 1, 2, 2])


@pytest.mark.parametrize('content,message', [
    ('', 'defines no class'),
    ('cat\ndog,\n', 'line 2 has an empty synonym'),
    ('cat\n , \n', 'line 2 is empty'),
])
def test_malformed_class_files(tmp_path, content, message):
    path = tmp_path / 'bad.txt'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(ValueError, match=message):
        text.read_class_names(path)


def test_duplicate_names_are_an_error_naming_the_lines(tmp_path):
    path = tmp_path / 'dup.txt'
    path.write_text('background, sky\ncar\nperson, people\nvehicle, car\n')
    with pytest.raises(ValueError, match=r"dup.txt, line 4 repeats 'car' of line 2"):
        text.read_class_names(path)
    with pytest.raises(ValueError, match=r"line 1 names 'sky' twice"):
        text.parse_class_names(['sky, sky', 'road'])
    assert text.read_class_names(path, allow_duplicates=True)[3] == ['vehicle', 'car']
    with pytest.raises(ValueError, match=r"line 61 repeats 'bed' of line 1"):
        text.read_class_names(CLASSNAMES / 'cls_coco_object.txt')  # the release's own file


def test_missing_and_binary_class_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='class-name file not found.*nope.txt'):
        text.read_class_names(tmp_path / 'nope.txt')
    (tmp_path / 'bin.txt').write_bytes(b'\xff\xfe\x00cat')
    with pytest.raises(ValueError, match='not a UTF-8 text file'):
        text.read_class_names(tmp_path / 'bin.txt')


def test_release_class_files_parse_like_the_release():
    # The release splits lines on ', ' and keeps trailing blanks ('wood ' in Context60);
    # blanks never change CLIP's tokens, so the stripped names give the same prompts.
    templates = text.read_templates()
    for path in sorted(CLASSNAMES.glob('cls_*.txt')):
        lines = path.read_text().splitlines()
        release = [[n.replace('\n', '') for n in line.split(', ')] for line in lines]
        ours = text.read_class_names(path, allow_duplicates=True)
        assert ours == [[n.strip() for n in names] for names in release], path.name
        for names, release_names in zip(ours, release):
            for name, release_name in zip(names, release_names):
                if name != release_name:
                    prompts = [t.format(name) for t in templates]
                    release_prompts = [t.format(release_name) for t in templates]
                    assert torch.equal(clip.tokenize(prompts), clip.tokenize(release_prompts))


def test_templates():
    templates = text.read_templates()
    assert len(templates) == 80 and templates[0] == 'a bad photo of a {}.'
    if (SHARED / 'prompts').is_dir():
        assert templates == (SHARED / 'prompts' / 'openai_imagenet_templates.txt'
                             ).read_text().splitlines()


def test_bad_template_file(tmp_path):
    (tmp_path / 't.txt').write_text('a photo of a {}\na photo\n')
    with pytest.raises(ValueError, match='needs a "{}"'):
        text.read_templates(tmp_path / 't.txt')


def test_text_feature_cache(tiny_fp64, tmp_path, monkeypatch):
    names = tmp_path / 'names.txt'
    names.write_text('cat\ndog, puppy\n')
    cache = tmp_path / 'text_cache'
    first, _ = text.build_query_features(tiny_fp64, names, ['a {}.'], checkpoint=TINY_CKPT,
                                         cache=cache)
    assert len(list(cache.iterdir())) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError('the text encoder ran although the features were cached')

    monkeypatch.setattr(text, 'encode_queries', no_encoding)
    again, idx = text.build_query_features(tiny_fp64, names, ['a {}.'], checkpoint=TINY_CKPT,
                                           cache=cache)
    assert torch.equal(first, again) and idx.tolist() == [0, 1, 1]
    monkeypatch.undo()
    names.write_text('cat\nbird\n')  # a changed class file is a new entry, never stale
    changed, _ = text.build_query_features(tiny_fp64, names, ['a {}.'], checkpoint=TINY_CKPT,
                                           cache=cache)
    expected = text.encode_queries(tiny_fp64, ['cat', 'bird'], ['a {}.'])
    assert torch.equal(changed, expected) and len(list(cache.iterdir())) == 2
    other_templates, _ = text.build_query_features(tiny_fp64, names, ['a photo of {}.'],
                                                   checkpoint=TINY_CKPT, cache=cache)
    assert not torch.equal(other_templates, changed)


def test_segmentor_from_a_loaded_clip_uses_the_cache_of_its_file(tiny_fp64, monkeypatch):
    from sfp.models import SFPSegmentor
    classes = [['cat'], ['dog', 'puppy']]
    kwargs = dict(name_path=classes, device='cpu', precision='fp64', templates=['a {}.'])
    first = SFPSegmentor(tiny_fp64, text_cache=TINY_CKPT, **kwargs)

    def no_encoding(*args, **kwargs):
        raise AssertionError('the text encoder ran although the features were cached')

    monkeypatch.setattr(text, 'encode_queries', no_encoding)
    again = SFPSegmentor(tiny_fp64, text_cache=TINY_CKPT, **kwargs)
    assert torch.equal(first.query_features, again.query_features)
    with pytest.raises(AssertionError, match='although the features were cached'):
        SFPSegmentor(tiny_fp64, **kwargs)  # a loaded model alone names no file: no cache


def test_semicolons_separate_synonyms_too():
    """ProxyCLIP's released class files separate background synonyms with '; '."""
    classes = text.parse_class_names(['sky; wall;tree', 'cat, kitten'])
    assert classes == [['sky', 'wall', 'tree'], ['cat', 'kitten']]
    with pytest.raises(ValueError, match='line 1 has an empty synonym'):
        text.parse_class_names(['sky;', 'cat'])
