"""Protocols: every method under the SFP paper's protocol resolves to the setting its
section 4.1 states; release-setting runs and protocol runs keep apart; a user's protocol
file works, and a bad one is a one-line error naming it."""
import importlib.util
import re

import pytest
from mmengine.config import Config

import sfp
from sfp.apis import available_methods
from sfp.benchmarks import PAPER_BENCHMARKS, PAPER_TABLE1_MIOU, REPORTED_MIOU, get_benchmark
from sfp.evaluation import SummaryRow, build_test_config, results_table
from sfp.protocols import load_protocol
from sfp.text import read_templates

from .conftest import REPO, SHARED, TINY_CKPT, TINY_DINO, TINY_SAM

# The paper's section 4.1, as the paper words it (not read from the protocol file).
PAPER_SHORT_SIDE, PAPER_CITYSCAPES_SHORT_SIDE = 336, 560
PAPER_WINDOW, PAPER_STRIDE = 224, 112
PAPER_CLIP = 'ViT-B/16'


def short_sides(pipeline):
    return [step['scale'][1] for step in pipeline if step['type'] == 'Resize']


def config_of(method, benchmark):
    return get_benchmark(benchmark).config(method)


@pytest.mark.parametrize('method', available_methods())
def test_every_method_under_paper_resolves_to_the_papers_setting(method, tmp_path):
    for benchmark in PAPER_BENCHMARKS:
        release = Config.fromfile(str(config_of(method, benchmark)))
        cfg = build_test_config(config_of(method, benchmark), protocol='paper')
        expected = PAPER_CITYSCAPES_SHORT_SIDE if benchmark == 'cityscapes' \
            else PAPER_SHORT_SIDE
        assert short_sides(cfg.test_dataloader.dataset.pipeline) == [expected], benchmark
        assert short_sides(cfg.test_pipeline) == [expected]
        model = cfg.model
        assert (model.slide_crop, model.slide_stride) == (PAPER_WINDOW, PAPER_STRIDE)
        assert model.pamr_steps == 0 and model.clip_path == PAPER_CLIP
        assert model.templates is None  # CLIP's 80, checked below
        # What the paper leaves unsaid stays the method's own (docs/protocols.md).
        for key in ('logit_scale', 'prob_thd', 'area_thd', 'name_path', 'encoder'):
            assert model.get(key) == release.model.get(key), (benchmark, key)
        assert cfg.protocol == 'paper'
        assert cfg.work_dir == f'work_dirs/paper/{config_of(method, benchmark).stem}'
    # The model the VOC21 config builds has the protocol's window and no PAMR (one
    # template: the text side is not what is checked here).
    # A config that reads mask files (CorrCLIP's) is pointed at a folder that exists.
    folder = isinstance(release.model.get('masks'), str)
    cfg = build_test_config(config_of(method, 'voc21'), protocol='paper',
                            clip_path=str(TINY_CKPT), vfm_path=str(TINY_DINO),
                            sam_path=str(TINY_SAM),
                            cfg_options={'model.masks': str(tmp_path)} if folder else None)
    model = dict(cfg.model, device='cpu', templates=['{}'])
    segmentor = sfp.SFPSegmentor(**{k: v for k, v in model.items() if k != 'type'})
    assert (segmentor.slide_crop, segmentor.slide_stride) == (PAPER_WINDOW, PAPER_STRIDE)
    assert segmentor.pamr is None


def test_default_templates_are_the_80_imagenet_prompts():
    templates = read_templates()
    assert len(templates) == 80 and templates[0] == 'a bad photo of a {}.'
    shared = SHARED / 'prompts' / 'openai_imagenet_templates.txt'
    if shared.is_file():
        assert templates == read_templates(shared)


def test_release_and_protocol_runs_keep_apart_and_options_win():
    config = config_of('naclip', 'voc21')
    release = build_test_config(config)
    paper = build_test_config(config, protocol='paper',
                              cfg_options={'model.slide_stride': 224})
    assert release.work_dir == 'work_dirs/naclip_vit-b16_voc21' and release.protocol is None
    assert paper.work_dir == 'work_dirs/paper/naclip_vit-b16_voc21'
    # NACLIP's release: whole image and PAMR; under the protocol, windows and no PAMR.
    assert (release.model.slide_crop, release.model.pamr_steps) == (0, 10)
    assert (paper.model.slide_crop, paper.model.pamr_steps) == (224, 0)
    assert paper.model.slide_stride == 224  # --cfg-options over the protocol


def test_protocol_summary_shows_the_papers_table1(tmp_path):
    rows = [SummaryRow('naclip', {'voc21': {'metrics': {'mIoU': 50.0}, 'clip_path': 'ViT-B/16',
                                            'setting_clip_path': 'ViT-B/16'}},
                       PAPER_TABLE1_MIOU['naclip'])]
    markdown = results_table(rows, ['voc21'], 'paper')['markdown']
    assert '| naclip (paper) | 58.90 | 58.90 |' in markdown  # not the README's 64.07
    assert '| naclip (difference) | -8.90 | -8.90 |' in markdown
    assert 'meaningless' not in markdown  # the setting's own weights
    assert REPORTED_MIOU['naclip']['voc21'] == 64.07


def write_protocol(folder, name, text):
    path = folder / f'{name}.py'
    path.write_text(text)
    return path


def test_user_protocol_file(tmp_path):
    path = write_protocol(tmp_path, 'mine', 'short_side = 448\n'
                          'short_side_per_benchmark = dict(ade20k=512)\n'
                          'model = dict(slide_crop=336, slide_stride=224, logit_scale=70)\n'
                          'model_per_benchmark = dict(ade20k=dict(logit_scale=45))\n')
    protocol = load_protocol(path)
    assert protocol.name == 'mine' and protocol.reference is None
    assert protocol.argument == str(path)
    voc = build_test_config(config_of('sclip', 'voc21'), protocol=path)
    ade = build_test_config(config_of('sclip', 'ade20k'), protocol=path)
    assert short_sides(voc.test_dataloader.dataset.pipeline) == [448]
    assert short_sides(ade.test_dataloader.dataset.pipeline) == [512]
    assert (voc.model.slide_crop, voc.model.slide_stride, voc.model.logit_scale) == \
        (336, 224, 70)
    assert (ade.model.slide_crop, ade.model.logit_scale) == (336, 45)
    assert voc.work_dir == 'work_dirs/mine/sclip_vit-b16_voc21'


@pytest.mark.parametrize('name,text,message', [
    ('typo', 'short_sides = 336\n', "unknown setting 'short_sides' (did you mean "
                                     "'short_side'?)"),
    ('city', 'short_side_per_benchmark = dict(cityscape=560)\n',
     "short_side_per_benchmark: unknown benchmark 'cityscape' (did you mean 'cityscapes'?)"),
    ('neg', 'short_side = -336\n', 'short_side must be a positive number of pixels'),
    ('per', 'model_per_benchmark = dict(ade=dict(prob_thd=0.1))\n',
     "model_per_benchmark: unknown benchmark 'ade' (did you mean 'ade20k'?)"),
    ('perarg', 'model_per_benchmark = dict(ade20k=dict(prob_thr=0.1))\n',
     "model.prob_thr is not an argument of SFPSegmentor (did you mean 'prob_thd'?)"),
    ('ref', "reference = 'paper_table2'\n", "unknown reference 'paper_table2' (did you mean "
                                            "'paper_table1'?)"),
    ('arg', 'model = dict(logit_scal=40)\n', "sets an argument this method does not take: "
                                             'model.logit_scal is not an argument of '
                                             "SFPSegmentor (did you mean 'logit_scale'?)"),
    ('paper', 'short_side = 400\n', "'paper' is the name of a protocol of "
                                    'configs/_protocols_/'),
])
def test_bad_protocol_file_is_one_line_naming_it(tmp_path, name, text, message):
    path = write_protocol(tmp_path, name, text)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        build_test_config(config_of('sfp', 'voc21'), protocol=path)
    assert len(str(err.value).splitlines()) == 1
    assert str(path) in str(err.value)


def test_unknown_protocol_name_through_the_cli(capsys):
    spec = importlib.util.spec_from_file_location('test_tool', REPO / 'tools' / 'test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(config_of('sfp', 'voc21')), '--protocol', 'papr']) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: unknown protocol 'papr' (did you mean 'paper'?): give one of "
                     'paper or a protocol file (.py, see docs/protocols.md)']
