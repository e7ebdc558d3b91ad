"""The SFP paper's tables: their numbers agree with the paper (its own averages and the
rows it repeats across tables, and the spec's copy of Table 1), every row's run builds
and predicts, and a row's tools/test.py command builds the same config as the run."""
import re
import shlex

import numpy as np
import pytest

import sfp
from sfp.apis import available_methods, segment_images
from sfp.benchmarks import (
    PAPER_BENCHMARKS,
    PAPER_COLUMNS,
    PAPER_TABLE1_AVERAGE,
    PAPER_TABLE1_MIOU,
    REPORTED_MIOU,
)
from sfp.evaluation import build_test_config, parse_cfg_options
from sfp.paper_tables import (
    TABLES,
    build_run_config,
    get_table,
    missing_reason,
    table_commands,
    table_runs,
)
from sfp.protocols import load_protocol

from .conftest import REPO, SHARED, TINY_CKPT, TINY_DINO, TINY_SAM

PAPER = load_protocol('paper')


def row(table, label):
    return next(r for r in get_table(table).rows if r.label == label)


def test_stated_averages_are_the_means_of_the_rows():
    """Each Avg. the paper prints is the mean of its row, to its rounding: a mistyped
    number (such as 62.9 for SFP's VOC21) breaks it."""
    for method, average in PAPER_TABLE1_AVERAGE.items():
        values = PAPER_TABLE1_MIOU[method]
        assert list(values) == PAPER_BENCHMARKS
        assert abs(np.mean(list(values.values())) - average) <= 0.05 + 1e-9, method
    for name in TABLES:
        for r in get_table(name).rows:
            if r.stated_average is not None:
                assert abs(np.mean(list(r.paper.values())) - r.stated_average) <= 0.05 + 1e-9


def test_rows_the_paper_repeats_agree():
    def v21_ade(values):
        return values['voc21'], values['ade20k']

    assert v21_ade(row('table2', 'ClearCLIP (base)').paper) == v21_ade(PAPER_TABLE1_MIOU[
        'clearclip'])
    sfp_v21_ade = dict(zip(('voc21', 'ade20k'), v21_ade(PAPER_TABLE1_MIOU['sfp'])))
    assert row('table2', '+ HAI (SFP)').paper == row('table3', 'l0 = 1').paper == sfp_v21_ade
    assert row('sup_table1', 'Q-K (baseline)').paper == row('table2', '+ SOM').paper
    assert row('sup_table1', 'Q-Q + K-K (release)').paper == row('table2', '+ SAE').paper
    assert row('sup_table2', 'sfp').paper['voc20'] == PAPER_TABLE1_MIOU['sfp']['voc20']
    assert row('sup_table2', 'clearclip').paper['voc20'] == PAPER_TABLE1_MIOU['clearclip'][
        'voc20']
    # The release's reported SFP row is the paper's Table 1 row.
    assert REPORTED_MIOU['sfp'] == PAPER_TABLE1_MIOU['sfp']


def test_table1_is_the_specs_copy_of_the_paper():
    spec = SHARED / 'docs' / 'SFP_ALGORITHM.md'
    if not spec.is_file():
        pytest.skip('the specification (../shared) is not beside this checkout')
    names = {'CLIP': 'clip', 'MaskCLIP': 'maskclip', 'CLIPtrase': 'cliptrase',
             'ClearCLIP': 'clearclip', 'SCLIP': 'sclip', 'NACLIP': 'naclip', 'LaVG': 'lavg',
             'ProxyCLIP': 'proxyclip', 'SFP': 'sfp'}
    rows = {}
    for line in spec.read_text().splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if cells[0] in names and len(cells) >= 10 and re.fullmatch(r'[\d.]+', cells[1]):
            rows[names[cells[0]]] = [float(c) for c in cells[1:10]]
    assert set(rows) == set(PAPER_TABLE1_MIOU)
    for method, values in rows.items():
        assert [PAPER_TABLE1_MIOU[method][b] for b in PAPER_COLUMNS] == values[:8], method
        assert PAPER_TABLE1_AVERAGE[method] == values[8]


def test_missing_methods_are_named_not_run(monkeypatch):
    assert missing_reason(row('table1', 'lavg')) is None
    assert any(r.row.method == 'lavg' for r in table_runs(get_table('table1')))
    monkeypatch.setattr('sfp.apis.available_methods', lambda: ['sfp'])
    assert missing_reason(row('table1', 'lavg')) == 'not in this framework'
    assert not any(r.row.method == 'lavg' for r in table_runs(get_table('table4')))
    with pytest.raises(ValueError, match="unknown table 'table5' .*known: table1, table2"):
        get_table('table5')


def all_runs():
    return [(name, run) for name in TABLES for run in table_runs(get_table(name))]


def test_every_tables_runs_build(tmp_path):
    """Every run of every table (on this checkout's methods) builds its config under the
    paper's protocol with the row's settings; one VOC model per distinct setting builds
    on the tiny CLIP and segments an image."""
    built = {}
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for name, run in all_runs():
        cfg = build_run_config(run, PAPER, tmp_path / 'data', tmp_path / 'work')
        model = cfg.model
        assert (model.slide_crop, model.slide_stride, model.pamr_steps) == (224, 112, 0) \
            or run.row.variant == 'pamr'
        r = run.row
        if name == 'table3' and r.variant:
            first = int(r.label.split('= ')[1])
            assert (model.cross_s, model.cross_e) == (first - 1, 11)
        if name == 'table4':
            assert model.clip_path == {'vit-b32': 'ViT-B/32', 'vit-l14': 'ViT-L/14'}[r.backbone]
        else:
            assert model.clip_path == 'ViT-B/16'
        assert cfg.work_dir == str(tmp_path / 'work' / 'paper' / run.name)
        # The tiny CLIP stands in for every backbone: rows differing only in it are one.
        key = (r.method, tuple(o for o in run.cfg_options if 'clip_path' not in o))
        if run.benchmark in ('voc21', 'voc20') and key not in built:
            args = {k: v for k, v in model.items() if k not in ('type', 'clip_path')}
            if 'vfm_path' in args:
                args['vfm_path'] = str(TINY_DINO)
            if 'sam_path' in args:
                args['sam_path'] = str(TINY_SAM)
            if isinstance(args.get('masks'), dict):  # LaVG's panoptic cut, small
                args['masks'] = dict(args['masks'], imgsize=64, N=2)
            elif isinstance(args.get('masks'), str):  # CorrCLIP's files: LaVG's cut instead
                args['masks'] = dict(type='PanopticCut', vfm_path=str(TINY_DINO), imgsize=64,
                                     N=2)
            built[key] = sfp.SFPSegmentor(str(TINY_CKPT), **dict(args, templates=['{}'],
                                                                 device='cpu'))
            prediction = segment_images(built[key], [image])[0].pred_sem_seg.data
            assert prediction.shape == (1, 40, 56)
    encoders = {key: seg.encoder for key, seg in built.items()}
    terms = {tuple(getattr(e.enhancer, 'terms', ())) for e in encoders.values()
             if hasattr(e, 'enhancer')}
    assert {('qq', 'guidance'), ('kk', 'guidance'), ('vv', 'guidance'),
            ('qq', 'kk', 'guidance'), ('qq', 'vv', 'guidance'), ('kk', 'vv', 'guidance')} <= terms
    pamr = [seg for (_, options), seg in built.items() if 'model.pamr_steps=10' in options]
    assert len(pamr) == 3 and all(seg.pamr is not None for seg in pamr)


def test_rows_sharing_a_run_share_it():
    names = [run.name for run in table_runs(get_table('sup_table1'))]
    assert len(names) == len(set(names))
    assert 'clearclip_vit-b16_voc21_som' in names  # the baseline: Table 2's + SOM run
    assert 'sfp_vit-b16_voc21_no-hai' in names  # Q-Q + K-K: Table 2's + SAE run
    table1 = [run.name for run in table_runs(get_table('table1'), ['voc21'])]
    assert table1 == [f'{m}_vit-b16_voc21' for m in PAPER_TABLE1_MIOU
                      if m in available_methods()] + \
        [f'{m}_vit-b16_voc21' for m in available_methods() if m not in PAPER_TABLE1_MIOU]


@pytest.mark.parametrize('table,label', [('sup_table1', 'Q-Q + V-V'), ('table3', 'l0 = 5'),
                                         ('table4', 'naclip ViT-L/14')])
def test_a_rows_command_line_builds_the_runs_config(tmp_path, table, label):
    run = next(r for r in table_runs(get_table(table), ['voc21']) if r.row.label == label)
    [command] = table_commands([run], PAPER, tmp_path / 'data', tmp_path / 'work')
    words = shlex.split(command)
    assert words[:2] == ['python', 'tools/test.py']

    def value(option):
        return words[words.index(option) + 1]

    from_command = build_test_config(
        words[2], data_root=value('--data-root'), work_dir=value('--work-dir'),
        protocol=value('--protocol'),
        cfg_options=parse_cfg_options(words[words.index('--cfg-options') + 1:]))
    in_process = build_run_config(run, PAPER, tmp_path / 'data', tmp_path / 'work')
    assert from_command.model.to_dict() == in_process.model.to_dict()
    assert from_command.work_dir == in_process.work_dir


def test_summary_of_a_folder_without_runs_is_an_error(tmp_path):
    from sfp.paper_tables import table_summary
    with pytest.raises(FileNotFoundError, match='no run of table2 under .*/paper; run it first'):
        table_summary(get_table('table2'), tmp_path, PAPER, require_runs=True)
    markdown = table_summary(get_table('table2'), tmp_path, PAPER)['markdown']
    assert '| + SOM (paper) | 60.10 | 18.20 | 39.15 |' in markdown
    assert 'Averages as the paper source states them: ClearCLIP (base) 36.9, + SOM 39.2' \
        in markdown


def test_missing_data_names_the_tools_own_option(tmp_path, capsys):
    """paper_tables takes --data-dir (the folder of every benchmark's data root), so its
    missing-data error says so, not tools/test.py's --data-root."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('paper_tables_tool',
                                                  REPO / 'tools' / 'paper_tables.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    code = tool.main(['table1', '--data-dir', str(tmp_path / 'nowhere'), '--benchmarks', 'voc21',
                 '--methods', 'sfp', '--work-dir', str(tmp_path / 'work')])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1
    assert 'with --data-dir' in err and 'VOCdevkit/VOC2012' in err and '--data-root' not in err
