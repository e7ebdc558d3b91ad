"""The benchmark table agrees with every config, class file and preset that uses it."""
from pathlib import Path

import pytest
from mmengine.config import Config

from sfp.apis import PRESETS, available_methods, load_preset
from sfp.benchmarks import BENCHMARKS, PAPER_BENCHMARKS, REPORTED_MIOU, get_benchmark
from sfp.datasets.checks import LAYOUTS
from sfp.text import read_class_names

from .conftest import REPO


def resize_short_side(cfg) -> int:
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize']
    assert len(resize) == 1
    return resize[0]['scale'][1]


@pytest.mark.parametrize('name', list(BENCHMARKS))
def test_sfp_config_matches_the_table(name):
    benchmark = BENCHMARKS[name]
    cfg = Config.fromfile(str(benchmark.config('sfp')))
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == benchmark.dataset_type
    assert dataset.data_root == f'data/{benchmark.data_root}'
    assert resize_short_side(cfg) == benchmark.short_side
    model = cfg.model
    assert model.name_path.endswith(f'configs/sfp/../classnames/{benchmark.class_file.name}')
    assert (model.logit_scale, model.prob_thd, model.get('area_thd')) == \
        (benchmark.logit_scale, benchmark.prob_thd, benchmark.area_thd)
    assert benchmark.class_file.is_file()
    assert LAYOUTS[dataset.type] in (benchmark.layout, LAYOUTS['CustomSegDataset'])


def test_paper_benchmarks_and_reported_numbers():
    assert PAPER_BENCHMARKS == ['voc21', 'context60', 'coco_object', 'voc20', 'context59',
                                'coco_stuff164k', 'cityscapes', 'ade20k']
    assert list(REPORTED_MIOU['sfp']) == PAPER_BENCHMARKS
    for method, row in REPORTED_MIOU.items():
        assert set(row) <= set(PAPER_BENCHMARKS), method


@pytest.mark.parametrize('name', list(BENCHMARKS))
def test_presets_are_the_table(name):
    preset = load_preset(name)
    classes = read_class_names(BENCHMARKS[name].class_file, allow_duplicates=True)
    assert PRESETS[name] == BENCHMARKS[name].class_file
    assert preset.classes == classes and len(preset.display_names) == len(classes)
    assert preset.short_side == BENCHMARKS[name].short_side


@pytest.mark.parametrize('method', available_methods())
def test_a_methods_preset_has_its_configs_class_file(method):
    """A baseline's preset is its release's class file (ClearCLIP's VOC21 file has one name
    per class; SFP's has background synonyms), as its config gives it."""
    name_path = Config.fromfile(str(BENCHMARKS['voc21'].config(method))).model.name_path
    preset = load_preset('voc21', method)
    assert preset.classes == read_class_names(name_path, allow_duplicates=True)
    assert 'name_path' not in preset.model_kwargs


def test_preset_display_names_are_the_datasets():
    assert load_preset('voc21').display_names[:2] == ['background', 'aeroplane']
    assert load_preset('voc21').classes[0][0] == 'sky'  # the first background synonym
    assert load_preset('context60').display_names[0] == 'background'
    assert load_preset('camvid').display_names[0] == read_class_names(
        BENCHMARKS['camvid'].class_file)[0][0]  # no dataset class list: the class file's


def test_unknown_benchmark_lists_the_known():
    with pytest.raises(ValueError, match=r"unknown benchmark 'ADE20K' \(did you mean "
                                         r"'ade20k'\?\); known: voc21, "):
        get_benchmark('ADE20K')


def test_docs_table_is_the_table():
    page = (REPO / 'docs' / 'evaluate.md').read_text()

    def fmt(value):
        return '-' if value is None else f'{value:g}'

    for b in BENCHMARKS.values():
        row = (f'| `{b.name}` | `{b.config().name}` | `data/{b.data_root}` | '
               f'`{b.class_file.name}` | {b.short_side} | {fmt(b.logit_scale)} | '
               f'{fmt(b.prob_thd)} | {fmt(b.area_thd)} | '
               f'{fmt(REPORTED_MIOU["sfp"].get(b.name))} |')
        assert row in page, row


@pytest.mark.parametrize('method', available_methods())
@pytest.mark.parametrize('name', PAPER_BENCHMARKS)
def test_every_method_config_names_the_table(method, name):
    """configs/<method>/<method>_vit-b16_<benchmark>.py evaluates the table's dataset with
    a class file named after the benchmark (the release's own copy for a baseline)."""
    benchmark = BENCHMARKS[name]
    cfg = Config.fromfile(str(benchmark.config(method)))
    assert cfg.test_dataloader.dataset.type == benchmark.dataset_type
    assert cfg.test_dataloader.dataset.data_root == f'data/{benchmark.data_root}'
    class_file = Path(cfg.model.name_path)
    assert class_file.name == benchmark.class_file.name and class_file.is_file()


def reported_rows(page: str) -> dict:
    """The rows of a page's reported-mIoU table (header '| method | voc21 | ...'), by
    method key ('SC-CLIP' is 'scclip'), as {benchmark: value} without blank cells."""
    lines = page.splitlines()
    header = '| method | ' + ' | '.join(PAPER_BENCHMARKS) + ' |'
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0].lower().replace('-', '')] = {
            b: float(v) for b, v in zip(PAPER_BENCHMARKS, cells[1:]) if v}
    return rows


@pytest.mark.parametrize('page', ['README.md', 'docs/methods.md'])
def test_reported_tables_are_the_table(page):
    """The README's results and the methods page's reported numbers are REPORTED_MIOU; the
    methods page lists every method that has reported numbers."""
    rows = reported_rows((REPO / page).read_text())
    assert rows == {m: REPORTED_MIOU.get(m) for m in rows}
    if page == 'docs/methods.md':
        assert set(rows) == set(REPORTED_MIOU)
