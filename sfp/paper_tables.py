"""The SFP paper's tables as runs, beside the paper's numbers.

Each row of a table is a method's benchmark config (``configs/<method>/``), on a backbone
(its model base ``configs/_base_/models/<method>_<backbone>.py``) and with a few model
arguments changed; every run is ``tools/test.py CONFIG --protocol paper --cfg-options ...``.
:func:`run_table` runs a table's rows in this process, :func:`table_commands` gives the
same runs as tools/test.py command lines, :func:`table_summary` prints what the work dirs
hold beside the paper's numbers.  ``tools/paper_tables.py`` is the command line; the
mapping of each row onto this code, and where it is not exact, is in docs/protocols.md.

Rows of methods this checkout does not have (no ``configs/_base_/models/<method>_vit-b16.py``,
or no model base for the row's backbone) are listed as such and skipped: a method added
with its configs is picked up without a change here.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .benchmarks import (
    CONFIGS_DIR,
    DEFAULT_BACKBONE,
    PAPER_BENCHMARKS,
    PAPER_TABLE1_AVERAGE,
    PAPER_TABLE1_MIOU,
    REPO,
    SFP_PAPER,
    config_stem,
    did_you_mean,
    get_benchmark,
)
from .protocols import Protocol, load_protocol, protocol_root

SUPPLEMENT = SFP_PAPER.replace('iccv25-sfp.pdf', 'iccv25-sfp-sup.pdf') + ', supplementary'
ABLATION_BENCHMARKS = ('voc21', 'ade20k')
BACKBONE_TITLES = {'vit-b16': 'ViT-B/16', 'vit-b32': 'ViT-B/32', 'vit-l14': 'ViT-L/14'}
PathLike = Union[str, Path]


@dataclass(frozen=True)
class TableRow:
    """One row of a paper table.

    Attributes:
        label: the row's name in the printed table.
        method: the ``configs/<method>/`` benchmark configs the row starts from.
        paper: benchmark -> the paper's mIoU.
        stated_average: the paper's Avg. column (over the table's benchmarks).
        variant: appended to the run's work-dir name when ``model`` changes the config
            ('' for the method's config as it is).
        model: model arguments set over the method's benchmark config.
        backbone: the row's CLIP (its model base changes the ViT-B/16 one).
    """

    label: str
    method: str
    paper: Dict[str, float] = field(default_factory=dict)
    stated_average: Optional[float] = None
    variant: str = ''
    model: Dict[str, Any] = field(default_factory=dict)
    backbone: str = DEFAULT_BACKBONE

    def run_name(self, benchmark: str) -> str:
        """The run's work-dir name (rows with equal runs share it)."""
        stem = config_stem(self.method, benchmark, self.backbone)
        return f'{stem}_{self.variant}' if self.variant else stem


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: its rows, columns and source.

    Attributes:
        name: the command-line name ('table2').
        title: what it shows.
        source: where its numbers come from.
        benchmarks: its columns.
        rows: its rows, in its order.
        notes: printed under it (where the mapping onto this code is not exact).
    """

    name: str
    title: str
    source: str
    benchmarks: Tuple[str, ...]
    rows: Tuple[TableRow, ...]
    notes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TableRun:
    """One run of a table: a row on a benchmark."""

    row: TableRow
    benchmark: str
    config: Path
    cfg_options: Tuple[str, ...]

    @property
    def name(self) -> str:
        return self.row.run_name(self.benchmark)


def _ablation(label: str, method: str, v21: float, ade: float, average: float,
              variant: str = '', **model: Any) -> TableRow:
    return TableRow(label, method, {'voc21': v21, 'ade20k': ade}, average, variant, model)


def _without_integrator(*terms: str) -> dict:
    """SFP's encoder without its integrator, the enhancer averaging ``terms`` (and the
    guidance attention) when given."""
    parts: Dict[str, Any] = dict(integrator=None)
    if terms:
        parts['enhancer'] = dict(terms=(*terms, 'guidance'))
    return parts


# Table 4's (method, backbone) pairs, in the paper's order (a method's pair runs once
# configs/_base_/models/<method>_<backbone>.py exists).
TABLE4_NUMBERS: Dict[Tuple[str, str], Tuple[float, float, float]] = {
    ('sclip', 'vit-b32'): (50.6, 14.8, 32.7), ('lavg', 'vit-b32'): (54.8, 15.5, 35.2),
    ('proxyclip', 'vit-b32'): (57.9, 16.7, 37.3), ('naclip', 'vit-b32'): (51.1, 14.9, 33.0),
    ('sfp', 'vit-b32'): (60.1, 17.1, 38.6),
    ('sclip', 'vit-l14'): (44.4, 10.9, 27.7), ('lavg', 'vit-l14'): (52.1, 17.3, 34.7),
    ('proxyclip', 'vit-l14'): (60.6, 22.6, 41.6), ('naclip', 'vit-l14'): (52.2, 17.3, 34.8),
    ('sfp', 'vit-l14'): (64.7, 22.1, 43.4),
}
TABLE3_FIRST_BLOCKS: Dict[int, Tuple[float, float, float]] = {
    1: (63.9, 20.8, 42.4), 5: (63.4, 20.5, 42.0), 8: (63.0, 20.3, 41.7),
    10: (62.6, 19.9, 41.3), 11: (62.5, 19.7, 41.1)}
_DOCS = 'docs/protocols.md'


def _table1() -> PaperTable:
    from .apis import available_methods

    methods = list(PAPER_TABLE1_MIOU) + [m for m in available_methods()
                                         if m not in PAPER_TABLE1_MIOU]
    return PaperTable(
        'table1', 'Table 1: training-free methods on the eight benchmarks (ViT-B/16)',
        f'{SFP_PAPER}, Table 1', tuple(PAPER_BENCHMARKS),
        tuple(TableRow(m, m, PAPER_TABLE1_MIOU.get(m, {}), PAPER_TABLE1_AVERAGE.get(m))
              for m in methods),
        ('Rows without a paper number are methods the paper does not have. The paper '
         'does not state the logit scale, thresholds or class names of its re-runs: each '
         f'method keeps its own ({_DOCS}).',))


def _table2() -> PaperTable:
    return PaperTable(
        'table2', "Table 2: SFP's modules added to ClearCLIP one by one",
        f'{SFP_PAPER}, Table 2', ABLATION_BENCHMARKS, (
            _ablation('ClearCLIP (base)', 'clearclip', 57.0, 16.7, 36.9),
            _ablation('+ SOM', 'clearclip', 60.1, 18.2, 39.2, 'som', purify=True),
            _ablation('+ SAE', 'sfp', 62.3, 19.5, 40.9, 'no-hai',
                      encoder_cfg=_without_integrator()),
            _ablation('+ HAI (SFP)', 'sfp', 63.9, 20.8, 42.4)),
        ('+ SOM: ClearCLIP with outliers detected (SOM) and mitigated once, before its last '
         'block. + SAE: SFP without its integrator, with its own thresholds and class names. '
         f'Neither is exactly the paper\'s code ({_DOCS}).',))


def _table3() -> PaperTable:
    rows = [_ablation(f'l0 = {first}', 'sfp', *numbers, f'hai{first}-11',
                      cross_s=first - 1, cross_e=11)
            for first, numbers in TABLE3_FIRST_BLOCKS.items()]
    rows.append(TableRow('release (blocks 4..10)', 'sfp'))
    return PaperTable(
        'table3', "Table 3: the integrator's blocks, l0 to L-1",
        f'{SFP_PAPER}, Table 3', ABLATION_BENCHMARKS, tuple(rows),
        ('Row l0 sums the outputs of blocks l0..11 (counted from 1). The release sums blocks '
         "4..10 (last row): Table 1's SFP, whose numbers the paper gives for l0 = 1 "
         f'({_DOCS}).',))


def _table4() -> PaperTable:
    rows = tuple(TableRow(f'{method} {BACKBONE_TITLES[backbone]}', method,
                          {'voc21': v21, 'ade20k': ade}, average, backbone=backbone)
                 for (method, backbone), (v21, ade, average) in TABLE4_NUMBERS.items())
    return PaperTable(
        'table4', 'Table 4: other CLIP backbones', f'{SFP_PAPER}, Table 4',
        ABLATION_BENCHMARKS, rows,
        ('Each row is the method\'s ViT-B/16 benchmark config with what its model base '
         'for the backbone changes (configs/_base_/models/<method>_<backbone>.py).',))


def _sup_table1() -> PaperTable:
    terms = {'Q-Q': ('qq',), 'K-K': ('kk',), 'V-V': ('vv',), 'Q-Q + V-V': ('qq', 'vv'),
             'K-K + V-V': ('kk', 'vv')}
    numbers = {'Q-Q': (62.1, 19.3, 40.7), 'K-K': (62.0, 19.3, 40.7), 'V-V': (61.4, 18.9, 40.2),
               'Q-Q + V-V': (61.9, 19.1, 40.5), 'K-K + V-V': (61.1, 18.7, 39.9)}
    variants = [_ablation(label, 'sfp', *numbers[label], 'no-hai-' + '-'.join(terms[label]),
                          encoder_cfg=_without_integrator(*terms[label]))
                for label in terms]
    rows = (_ablation('Q-K (baseline)', 'clearclip', 60.1, 18.2, 39.2, 'som', purify=True),
            *variants[:3],
            _ablation('Q-Q + K-K (release)', 'sfp', 62.3, 19.5, 40.9, 'no-hai',
                      encoder_cfg=_without_integrator()),
            *variants[3:])
    return PaperTable(
        'sup_table1', "Supplementary Table 1: the enhancer's self-self attention",
        f'{SUPPLEMENT}, Table 1', ABLATION_BENCHMARKS, rows,
        ("Every row but the baseline is SFP without its integrator, the enhancer averaging "
         "the named attentions and the guidance. The baseline, 'without SAE and HAI', is "
         f"Table 2's + SOM, whose numbers it repeats ({_DOCS}).",))


def _sup_table2() -> PaperTable:
    numbers = {'clearclip': (80.9, 81.5), 'sclip': (81.5, 83.1), 'sfp': (84.5, 84.9)}
    rows = []
    for method, (without, with_pamr) in numbers.items():
        rows += [TableRow(method, method, {'voc20': without}),
                 TableRow(f'{method} + PAMR', method, {'voc20': with_pamr}, variant='pamr',
                          model=dict(pamr_steps=10))]
    return PaperTable(
        'sup_table2', 'Supplementary Table 2: PAMR post-processing on VOC20',
        f'{SUPPLEMENT}, Table 2', ('voc20',), tuple(rows),
        ('PAMR runs 10 steps with dilations 8 and 16 (NACLIP\'s release); the paper does not '
         f'state its setting ({_DOCS}).',))


TABLES: Dict[str, Callable[[], PaperTable]] = {
    'table1': _table1, 'table2': _table2, 'table3': _table3, 'table4': _table4,
    'sup_table1': _sup_table1, 'sup_table2': _sup_table2}


def get_table(name: str) -> PaperTable:
    """A table by name; an unknown name is a one-line error listing the known."""
    if name not in TABLES:
        raise ValueError(f'unknown table {name!r}{did_you_mean(name, list(TABLES))}; '
                         f'known: {", ".join(TABLES)}')
    return TABLES[name]()


def model_base(method: str, backbone: str = DEFAULT_BACKBONE) -> Path:
    return CONFIGS_DIR / '_base_' / 'models' / f'{method}_{backbone}.py'


def missing_reason(row: TableRow) -> Optional[str]:
    """Why a row cannot run in this checkout (None: it can)."""
    from .apis import available_methods

    if row.method not in available_methods():
        return 'not in this framework'
    base = model_base(row.method, row.backbone)
    if not base.is_file():
        return f'no {base.relative_to(REPO)}'
    return None


def backbone_changes(method: str, backbone: str) -> Dict[str, Any]:
    """The model arguments the method's base for ``backbone`` changes from its ViT-B/16
    base (e.g. ``clip_path``)."""
    if backbone == DEFAULT_BACKBONE:
        return {}
    from mmengine.config import Config

    default = Config.fromfile(str(model_base(method))).model.to_dict()
    other = Config.fromfile(str(model_base(method, backbone))).model.to_dict()
    return {k: v for k, v in other.items() if k not in default or default[k] != v}


def _option(key: str, value: Any) -> str:
    """One ``--cfg-options`` item as tools/test.py parses it back (dicts as literals)."""
    # Literals in double quotes, which read better inside the shell's single quotes.
    text = repr(value).replace("'", '"') if isinstance(value, (dict, tuple, list)) \
        else str(value)
    return f'model.{key}={text}'


def table_runs(table: PaperTable, benchmarks: Optional[Sequence[str]] = None,
               methods: Optional[Sequence[str]] = None) -> List[TableRun]:
    """The runs of a table's rows that this checkout has, once each (rows sharing a run
    share it), on ``benchmarks`` (default: the table's) for ``methods`` (default: all)."""
    runs: Dict[str, TableRun] = {}
    for row in table.rows:
        if (methods and row.method not in methods) or missing_reason(row):
            continue
        options = dict(backbone_changes(row.method, row.backbone), **row.model)
        for name in benchmarks or table.benchmarks:
            run = TableRun(row, name, get_benchmark(name).config(row.method),
                           tuple(_option(k, v) for k, v in options.items()))
            runs.setdefault(run.name, run)
    return list(runs.values())


def run_work_dir(run: TableRun, work_root: PathLike, protocol: Optional[str]) -> Path:
    return protocol_root(work_root, protocol) / run.name


def table_commands(runs: Sequence[TableRun], protocol: Optional[Protocol], data_dir: PathLike,
                   work_root: PathLike, clip_path: Optional[str] = None,
                   extra_options: Sequence[str] = (),
                   vfm_path: Optional[str] = None) -> List[str]:
    """Each run as a tools/test.py command line."""
    commands = []
    for run in runs:
        args = ['python', 'tools/test.py', str(run.config.relative_to(REPO)),
                '--data-root', str(Path(data_dir) / get_benchmark(run.benchmark).data_root),
                '--work-dir', str(run_work_dir(run, work_root, protocol and protocol.name))]
        if protocol is not None:
            args += ['--protocol', protocol.argument]
        if clip_path:
            args += ['--clip-path', clip_path]
        if vfm_path:
            args += ['--vfm-path', vfm_path]
        options = [*run.cfg_options, *extra_options]
        if options:
            args += ['--cfg-options', *options]
        commands.append(shlex.join(args))
    return commands


def build_run_config(run: TableRun, protocol: Optional[Protocol], data_dir: PathLike,
                     work_root: PathLike, clip_path: Optional[str] = None,
                     extra_options: Sequence[str] = (), vfm_path: Optional[str] = None):
    """The run's config, as tools/test.py builds it from :func:`table_commands`' line."""
    from .evaluation import build_test_config, parse_cfg_options

    cfg = build_test_config(
        run.config, data_root=str(Path(data_dir) / get_benchmark(run.benchmark).data_root),
        clip_path=clip_path, vfm_path=vfm_path, work_dir=str(run_work_dir(run, work_root,
                                                       protocol and protocol.name)),
        cfg_options=parse_cfg_options([*run.cfg_options, *extra_options]), protocol=protocol)
    # One Runner after another in this process: each its own logger and visualizer.
    cfg.experiment_name = cfg.visualizer.name = run.name
    return cfg


def run_table(runs: Sequence[TableRun], protocol: Optional[Protocol], data_dir: PathLike,
              work_root: PathLike, clip_path: Optional[str] = None,
              extra_options: Sequence[str] = (), skip_done: bool = False,
              vfm_path: Optional[str] = None,
              log: Callable[[str], None] = print) -> List[str]:
    """Run a table's runs one after another in this process.

    Every run's config and data are checked before the first starts.  A run that fails
    is reported and the others go on.  Returns the failures' messages.
    """
    from .evaluation import check_test_data, read_record, run_test

    name = protocol and protocol.name
    if skip_done:
        runs = [r for r in runs if read_record(run_work_dir(r, work_root, name)) is None]
    configs = [build_run_config(r, protocol, data_dir, work_root, clip_path, extra_options,
                                vfm_path) for r in runs]
    checked = set()
    for cfg in configs:
        dataset = cfg.test_dataloader.dataset
        if (dataset.type, str(dataset.data_root)) not in checked:
            check_test_data(cfg)
            checked.add((dataset.type, str(dataset.data_root)))
    failures = []
    for index, (run, cfg) in enumerate(zip(runs, configs), start=1):
        log(f'[{index}/{len(runs)}] {run.row.label} on {run.benchmark}: {cfg.work_dir}')
        try:
            run_test(cfg)
        except Exception as err:  # one failed run (out of memory, say) must not stop the rest
            failures.append(f'{run.row.label} on {run.benchmark}: {type(err).__name__}: {err}')
            log(f'FAILED: {failures[-1]}')
    return failures


def table_summary(table: PaperTable, work_root: PathLike, protocol: Optional[Protocol],
                  benchmarks: Optional[Sequence[str]] = None,
                  methods: Optional[Sequence[str]] = None,
                  require_runs: bool = False) -> Dict[str, str]:
    """The table as the work dirs hold it, beside the paper's numbers (markdown, CSV).

    With ``require_runs``, a work folder holding none of its runs is a FileNotFoundError.
    """
    from .evaluation import SummaryRow, read_record, results_table

    benchmarks = list(benchmarks or table.benchmarks)
    name = protocol and protocol.name
    full = sorted(benchmarks) == sorted(table.benchmarks)
    rows, missing = [], []
    for row in table.rows:
        if methods and row.method not in methods:
            continue
        reason = missing_reason(row)
        if reason:
            missing.append(f'{row.label} ({reason})')
            continue
        rows.append(SummaryRow(
            row.label, {b: read_record(protocol_root(work_root, name) / row.run_name(b))
                        for b in benchmarks},
            row.paper, row.stated_average if full else None))
    if require_runs and all(run is None for r in rows for run in r.runs.values()):
        raise FileNotFoundError(f'no run of {table.name} under '
                                f'{protocol_root(work_root, name).resolve()}; run it first, or '
                                f'give the --work-dir (and --protocol) it ran with')
    notes = [f'{table.title}. Source: {table.source}.', *table.notes]
    if protocol is not None:
        notes.append(f'Protocol: {protocol.argument}.')
    if missing:
        notes.append(f'Rows without a run here: {"; ".join(missing)}.')
    return results_table(rows, benchmarks, 'paper', first_column='row', notes=notes)


def resolve_protocol(protocol: Optional[str]) -> Optional[Protocol]:
    """A table's protocol: a name or file, or None / 'none' for each config's own."""
    return None if protocol in (None, 'none') else load_protocol(protocol)
