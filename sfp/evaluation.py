"""Benchmark evaluation with mmengine's Runner, and the summary table of several runs."""
from __future__ import annotations

import ast
import csv
import functools
import inspect
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_rank
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from .benchmarks import PAPER_BENCHMARKS, REPORTED_TABLES, config_stem, did_you_mean
from .clip.loader import checkpoint_sha256
from .datasets import check_dataset_config, check_dataset_files
from .protocols import Protocol, apply_protocol, load_protocol, protocol_root
from .utils import atomic_write_text

PathLike = Union[str, Path]
METRICS_FILE = 'metrics.json'
# Evaluation logs progress about this many times per run.
PROGRESS_LINES = 10


class OutputExistsError(FileExistsError):
    """An output folder already holds results that a run would overwrite."""


def _refuse_to_overwrite(folder: Optional[PathLike], option: str, overwrite: bool) -> None:
    if folder and not overwrite and Path(folder).is_dir() and any(Path(folder).iterdir()):
        raise OutputExistsError(f'{option} {folder} already holds files from an earlier run; '
                                f'choose another folder or pass --overwrite')


def parse_cfg_options(items: Sequence[str]) -> dict:
    """``key=value`` overrides as mmengine's ``--cfg-options`` reads them, and also dict
    values written as Python literals (``model.pm={'type':'LOF','n_neighbors':20}``), which
    mmengine would split at their commas.  Such a dict replaces the config's value whole.
    """
    options = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--cfg-options takes key=value pairs, got {item!r}')
        if value.lstrip().startswith('{'):
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError) as err:
                raise ValueError(f'--cfg-options {key}: {value!r} is not a Python dict '
                                 f'literal ({err})') from err
            if isinstance(options[key], dict):
                options[key]['_delete_'] = True
        else:
            options[key] = DictAction._parse_iterable(value)
    return options


def merge_cfg_options(cfg: Config, options: dict) -> None:
    """Merge :func:`parse_cfg_options`' overrides into a config.

    A dict literal carries mmengine's ``_delete_`` so that it replaces the config's value
    whole; where the config has no such key, mmengine sets the dict with the flag still in
    it, and it is removed here.
    """
    cfg.merge_from_dict(options)
    for key, value in options.items():
        if isinstance(value, dict):
            node = cfg
            for part in key.split('.'):
                node = node.get(part) if isinstance(node, (Config, dict)) else None
            if isinstance(node, dict):
                node.pop('_delete_', None)


def build_test_config(config: PathLike, data_root: Optional[str] = None,
                      clip_path: Optional[str] = None, work_dir: Optional[str] = None,
                      cfg_options: Optional[dict] = None, launcher: str = 'none',
                      show_dir: Optional[str] = None, out_dir: Optional[str] = None,
                      overwrite: bool = False,
                      protocol: Union[str, Path, Protocol, None] = None,
                      vfm_path: Optional[str] = None,
                      sam_path: Optional[str] = None) -> Config:
    """Load a config and apply the command-line overrides of tools/test.py.

    In order: the config, the ``protocol`` (a name, a protocol file or a
    :class:`~sfp.protocols.Protocol`; see :mod:`sfp.protocols`), ``cfg_options``, then
    ``data_root``, ``clip_path``, ``vfm_path`` and ``sam_path``.  ``vfm_path`` applies to a
    config whose method reads a vision foundation model (its model names one) and is
    ignored by the others, so one launch can give it to every method; ``sam_path`` likewise
    to a method that reads SAM (Trident).  A protocol's runs default to the
    work dir ``work_dirs/<protocol>/<config name>``.

    Catches, before anything is built, what would otherwise fail deep inside the Runner:
    a model argument the segmentor does not take, and ``--launcher pytorch`` outside
    torchrun.
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(str(config))
    cfg.protocol = None
    if protocol is not None:
        protocol = load_protocol(protocol)
        try:
            check_model_arguments(dict(dict.fromkeys(protocol.model_keys),
                                       type=cfg.model.type))
        except ValueError as err:
            raise ValueError(f'protocol {protocol.name} ({protocol.path}) sets an argument '
                             f'this method does not take: {err}') from None
        apply_protocol(cfg, protocol)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    check_launcher(launcher)
    cfg.launcher = launcher
    loader = cfg.test_dataloader
    # More workers than cores only adds processes competing for the same cores.
    loader.num_workers = min(loader.get('num_workers', 0), available_cores())
    if loader.num_workers == 0:
        loader.persistent_workers = False  # PyTorch refuses it without workers
    if not torch.cuda.is_available():
        loader.pin_memory = False  # pinning only helps host-to-GPU copies
    check_images_when_loading(cfg.test_dataloader.dataset.pipeline)
    if data_root:
        cfg.test_dataloader.dataset.data_root = data_root
    # The weights the setting names, before --clip-path: the summary says when a run used
    # others (random test weights, say), whose numbers mean nothing beside reported ones.
    cfg.setting_clip_path = cfg.model.get('clip_path')
    if clip_path:
        cfg.model.clip_path = clip_path
    if vfm_path and 'vfm_path' in cfg.model:
        cfg.model.vfm_path = vfm_path
    if sam_path and 'sam_path' in cfg.model:
        cfg.model.sam_path = sam_path
    check_model_arguments(cfg.model)
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(
        protocol_root('work_dirs', cfg.protocol) / config.stem)
    _refuse_to_overwrite(show_dir, '--show-dir', overwrite)
    _refuse_to_overwrite(out_dir, '--out', overwrite)
    if show_dir:
        cfg.default_hooks.visualization.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    if out_dir:
        cfg.test_evaluator.update(output_dir=out_dir, keep_results=True)
    return cfg


def check_images_when_loading(pipeline: list) -> None:
    """Read images with :class:`~sfp.datasets.LoadImageChecked` where a pipeline reads them
    with mmcv's ``LoadImageFromFile``: the same pixels, also what only Pillow decodes, and
    an unreadable file is one line naming it.  The configs keep mmcv's loader, which
    mmseg's ``inference_model`` and ``MMSegInferencer`` look for."""
    for step in pipeline:
        if step.get('type') == 'LoadImageFromFile':
            step['type'] = 'LoadImageChecked'


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_launcher(launcher: str) -> None:
    """``--launcher pytorch`` needs the environment torchrun gives each process."""
    if launcher == 'pytorch' and not {'RANK', 'WORLD_SIZE', 'MASTER_ADDR'} <= os.environ.keys():
        raise ValueError('--launcher pytorch runs one process per GPU and needs torchrun to '
                         'start them: torchrun --nproc_per_node N tools/test.py CONFIG '
                         '--launcher pytorch (or GPUS=N bash distribute_test.sh); for one '
                         'process, leave --launcher out')


def check_model_arguments(model_cfg: dict) -> None:
    """Every ``model.<key>`` must be an argument of the model's class.

    Raises ValueError naming the unknown key, the closest valid one and all valid ones.
    """
    from mmseg.registry import MODELS

    model_type = model_cfg.get('type')
    with MODELS.switch_scope_and_registry('mmseg') as registry:
        cls = registry.get(model_type) if isinstance(model_type, str) else model_type
    if cls is None:
        raise ValueError(f'model.type={model_type!r} is not a registered model')
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name in parameters if name != 'self']
    for key in model_cfg:
        if key != 'type' and key not in valid:
            raise ValueError(f'model.{key} is not an argument of {cls.__name__}'
                             f'{did_you_mean(key, valid)}; valid: {", ".join(valid)}')


def check_test_data(cfg: Config) -> int:
    """Fail early, with the expected layout, on a wrong data root or a missing file.

    Returns the number of images.
    """
    dataset_cfg = cfg.test_dataloader.dataset
    check_dataset_config(dataset_cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(dataset_cfg)
    check_dataset_files(dataset)
    return len(dataset)


def progress_interval(num_images: int, batch_size: int, world_size: int) -> int:
    """Batches between two progress lines, so that a run logs about PROGRESS_LINES times."""
    batches = math.ceil(num_images / max(1, batch_size * world_size))
    return max(1, batches // PROGRESS_LINES)


def run_test(cfg: Config) -> Dict[str, float]:
    """Evaluate with mmengine's Runner; write the metrics JSON of this run.

    The metrics go to ``<work_dir>/<timestamp>/metrics.json`` (one per run, never
    overwritten) and ``<work_dir>/metrics.json`` (the latest run), both atomically.
    """
    if 'custom_imports' in cfg:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    num_images = check_test_data(cfg)
    world_size = int(os.environ.get('WORLD_SIZE', 1)) if cfg.launcher != 'none' else 1
    cfg.default_hooks.logger.interval = progress_interval(
        num_images, cfg.test_dataloader.get('batch_size', 1), world_size)
    if (cfg.launcher == 'pytorch' and not torch.cuda.is_available()
            and not torch.distributed.is_initialized()):
        # mmengine's launcher pins a CUDA device per process; on CPUs start gloo here.
        torch.distributed.init_process_group(backend='gloo')
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if get_rank() == 0:
        record = dict(config=str(cfg.filename), protocol=cfg.get('protocol'),
                      dataset=cfg.test_dataloader.dataset.type,
                      data_root=str(cfg.test_dataloader.dataset.data_root),
                      clip_path=str(cfg.model.get('clip_path')),
                      setting_clip_path=str(cfg.get('setting_clip_path',
                                                    cfg.model.get('clip_path'))),
                      num_images=num_images,
                      timestamp=runner.timestamp,
                      metrics={k: float(v) for k, v in metrics.items()})
        text = json.dumps(record, indent=2) + '\n'
        atomic_write_text(Path(cfg.work_dir) / runner.timestamp / METRICS_FILE, text)
        atomic_write_text(Path(cfg.work_dir) / METRICS_FILE, text)
    return metrics


Record = Dict[str, object]


def read_record(work_dir: PathLike) -> Optional[Record]:
    """The latest run's record in a work dir (``metrics.json``), or None."""
    path = Path(work_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class SummaryRow:
    """One row of the summary: our runs and the reference numbers beside them.

    Attributes:
        label: the row's name (a method, or a paper table's row).
        runs: benchmark -> the run's record (None: not run).
        reference: benchmark -> the reference number (absent: none).
        stated_average: the average the reference states for the row, if any.
    """

    label: str
    runs: Dict[str, Optional[Record]]
    reference: Dict[str, float] = field(default_factory=dict)
    stated_average: Optional[float] = None

    def ours(self, benchmark: str) -> Optional[float]:
        run = self.runs.get(benchmark)
        return None if run is None else run['metrics'].get('mIoU')


def collect_rows(work_root: PathLike, methods: Sequence[str], benchmarks: Sequence[str],
                 protocol: Optional[str] = None,
                 reference: str = 'release') -> List[SummaryRow]:
    """One row per method: the latest run of each benchmark, read from the work dir
    tools/test.py uses by default (``<work_root>[/<protocol>]/<method>_vit-b16_<benchmark>``),
    beside the ``reference`` table's numbers (a key of REPORTED_TABLES).

    Raises FileNotFoundError when the folder does not exist or holds none of the runs.
    """
    root = protocol_root(work_root, protocol)
    if not root.is_dir():
        raise FileNotFoundError(f'work folder not found: {root.resolve()} (tools/test.py '
                                f'writes to work_dirs/[<protocol>/]<config name>/ by default)')
    table = REPORTED_TABLES[reference]
    rows = []
    for method in methods:
        stated = table.stated_average.get(method)
        rows.append(SummaryRow(
            method, {b: read_record(root / config_stem(method, b)) for b in benchmarks},
            table.miou.get(method, {}),
            stated if sorted(benchmarks) == sorted(PAPER_BENCHMARKS) else None))
    if all(run is None for row in rows for run in row.runs.values()):
        raise FileNotFoundError(
            f'no {METRICS_FILE} under {root.resolve()}/<method>_vit-b16_<benchmark>/ for '
            f'methods {", ".join(methods)} and benchmarks {", ".join(benchmarks)}; is it '
            f'the folder tools/test.py wrote to?')
    return rows


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    return sum(values) / len(values) if values and None not in values else None


@functools.cache
def _weights_id(clip_path: str) -> str:
    return checkpoint_sha256(clip_path) or clip_path


def other_weights_note(rows: Sequence[SummaryRow], reference_label: str) -> Optional[str]:
    """A note when runs used other weights than their setting names (``--clip-path``
    over the config's ``clip_path``; the same file under another name is the same)."""
    swaps = sorted({(str(run['clip_path']), str(run['setting_clip_path']))
                    for row in rows for run in row.runs.values()
                    if run and run.get('setting_clip_path') not in (None, 'None')
                    and run['clip_path'] != run['setting_clip_path']
                    and _weights_id(str(run['clip_path']))
                    != _weights_id(str(run['setting_clip_path']))})
    if not swaps:
        return None
    used = '; '.join(f'{used} instead of {setting}' for used, setting in swaps)
    return (f'Our numbers come from other weights than their setting names ({used}): '
            f'they are not comparable with the rows marked ({reference_label}), and on '
            f'random weights (such as the tests\' tiny CLIP) they are meaningless.')


def results_table(rows: Sequence[SummaryRow], benchmarks: Sequence[str],
                  reference_label: str = 'reported', first_column: str = 'method',
                  notes: Sequence[str] = ()) -> Dict[str, str]:
    """Markdown and CSV tables, rows by benchmarks: our mIoU, the reference one and the
    difference per row, with the average over the benchmarks when all are present; then
    the stated averages, a note on runs made with other weights, and ``notes``."""
    def fmt(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    lines = [f'| {first_column} | ' + ' | '.join(benchmarks) + ' | average |',
             '|---|' + '---:|' * (len(benchmarks) + 1)]
    csv_rows = []
    for row in rows:
        ours = [row.ours(b) for b in benchmarks]
        reference = [row.reference.get(b) for b in benchmarks]
        diff = [None if o is None or r is None else o - r for o, r in zip(ours, reference)]
        for label, values in ((row.label, ours), (f'{row.label} ({reference_label})',
                                                  reference)):
            lines.append(f'| {label} | ' + ' | '.join(fmt(v) for v in values + [_mean(values)])
                         + ' |')
        lines.append(f'| {row.label} (difference) | ' + ' | '.join(
            '-' if d is None else f'{d:+.2f}' for d in diff + [
                None if _mean(ours) is None or _mean(reference) is None
                else _mean(ours) - _mean(reference)]) + ' |')
        csv_rows += [[row.label, b, '' if o is None else f'{o:.4f}', '' if r is None else r]
                     for b, o, r in zip(benchmarks, ours, reference)]
    stated = [f'{row.label} {row.stated_average}' for row in rows
              if row.stated_average is not None]
    all_notes = ([f'Averages as the {reference_label} source states them: {", ".join(stated)} '
                  f'(the average column is the mean of the rounded numbers above).']
                 if stated else [])
    weights = other_weights_note(rows, reference_label)
    all_notes += ([weights] if weights else []) + list(notes)
    markdown = '\n'.join(lines) + '\n' + ''.join(f'\n{n}\n' for n in all_notes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow([first_column, 'benchmark', 'miou', f'{reference_label}_miou'])
    writer.writerows(csv_rows)
    return {'markdown': markdown, 'csv': buffer.getvalue()}


def write_tables(tables: Dict[str, str], out: PathLike) -> None:
    """``out``.md and ``out``.csv, atomically."""
    out = Path(out)
    atomic_write_text(out.with_suffix('.md'), tables['markdown'])
    atomic_write_text(out.with_suffix('.csv'), tables['csv'])


def write_summary(work_root: PathLike, out: Optional[PathLike] = None,
                  methods: Sequence[str] = ('sfp',),
                  benchmarks: Sequence[str] = PAPER_BENCHMARKS,
                  protocol: Union[str, Path, Protocol, None] = None) -> str:
    """Summarise the runs under ``work_root`` (under ``protocol``: its runs, beside the
    protocol's reference numbers) into ``out``.md and ``out``.csv (default
    ``<work_root>[/<protocol>]/summary``)."""
    name, reference, notes = None, 'release', []
    if protocol is not None:
        protocol = load_protocol(protocol)
        name, reference = protocol.name, protocol.reference
        notes.append(f'Protocol: {protocol.argument} (every method under one setting; see '
                     f'docs/protocols.md).')
    if reference is None:  # a protocol without reference numbers
        rows = collect_rows(work_root, methods, benchmarks, name, 'release')
        rows = [SummaryRow(r.label, r.runs) for r in rows]
        label = 'reported'
    else:
        rows = collect_rows(work_root, methods, benchmarks, name, reference)
        label = REPORTED_TABLES[reference].label
        if protocol is not None:
            notes += missing_rows_note(REPORTED_TABLES[reference].miou, methods, label)
    tables = results_table(rows, benchmarks, label, notes=notes)
    write_tables(tables, out or protocol_root(work_root, name) / 'summary')
    return tables['markdown']


def missing_rows_note(reference: Dict[str, Dict[str, float]], shown: Sequence[str],
                      label: str) -> List[str]:
    """A note naming the reference's methods that have no row here, and why."""
    from .apis import available_methods

    available = available_methods()
    missing = [f'{m} ({"not run" if m in available else "not in this framework"})'
               for m in reference if m not in shown]
    return [f'Rows of the {label} table without a run here: {", ".join(missing)}.'] \
        if missing else []


def local_rank_from_args(local_rank: int) -> None:
    """``torch.distributed.launch`` passes --local-rank; torchrun sets LOCAL_RANK."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
