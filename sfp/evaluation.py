"""Benchmark evaluation with mmengine's Runner, and the summary table of several runs."""
from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import math
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import get_rank
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from .benchmarks import PAPER_BENCHMARKS, REPORTED_MIOU, STATED_AVERAGE, config_stem, did_you_mean
from .datasets import check_dataset_config, check_dataset_files
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


def build_test_config(config: PathLike, data_root: Optional[str] = None,
                      clip_path: Optional[str] = None, work_dir: Optional[str] = None,
                      cfg_options: Optional[dict] = None, launcher: str = 'none',
                      show_dir: Optional[str] = None, out_dir: Optional[str] = None,
                      overwrite: bool = False, vfm_path: Optional[str] = None) -> Config:
    """Load a config and apply the command-line overrides of tools/test.py.

    Catches, before anything is built, what would otherwise fail deep inside the Runner:
    a model argument the segmentor does not take, and ``--launcher pytorch`` outside
    torchrun.
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_launcher(launcher)
    cfg.launcher = launcher
    loader = cfg.test_dataloader
    # More workers than cores only adds processes competing for the same cores.
    loader.num_workers = min(loader.get('num_workers', 0), available_cores())
    if loader.num_workers == 0:
        loader.persistent_workers = False  # PyTorch refuses it without workers
    if not torch.cuda.is_available():
        loader.pin_memory = False  # pinning only helps host-to-GPU copies
    if data_root:
        cfg.test_dataloader.dataset.data_root = data_root
    if clip_path:
        cfg.model.clip_path = clip_path
    if vfm_path:
        cfg.model.vfm_path = vfm_path
    check_model_arguments(cfg.model)
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(Path('work_dirs') / config.stem)
    _refuse_to_overwrite(show_dir, '--show-dir', overwrite)
    _refuse_to_overwrite(out_dir, '--out', overwrite)
    if show_dir:
        cfg.default_hooks.visualization.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    if out_dir:
        cfg.test_evaluator.update(output_dir=out_dir, keep_results=True)
    return cfg


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
        record = dict(config=str(cfg.filename), dataset=cfg.test_dataloader.dataset.type,
                      data_root=str(cfg.test_dataloader.dataset.data_root),
                      clip_path=str(cfg.model.get('clip_path')), num_images=num_images,
                      timestamp=runner.timestamp,
                      metrics={k: float(v) for k, v in metrics.items()})
        text = json.dumps(record, indent=2) + '\n'
        atomic_write_text(Path(cfg.work_dir) / runner.timestamp / METRICS_FILE, text)
        atomic_write_text(Path(cfg.work_dir) / METRICS_FILE, text)
    return metrics


Results = Dict[Tuple[str, str], Optional[float]]


def collect_results(work_root: PathLike, methods: Sequence[str],
                    benchmarks: Sequence[str]) -> Results:
    """Latest mIoU of each (method, benchmark) under ``work_root``, read from the work dir
    tools/test.py uses by default (``<work_root>/<method>_vit-b16_<benchmark>``).

    Raises FileNotFoundError when the folder does not exist or holds none of the runs.
    """
    root = Path(work_root)
    if not root.is_dir():
        raise FileNotFoundError(f'work folder not found: {root.resolve()} (tools/test.py '
                                f'writes to work_dirs/<config name>/ by default)')
    results: Results = {}
    for method in methods:
        for benchmark in benchmarks:
            path = root / config_stem(method, benchmark) / METRICS_FILE
            results[(method, benchmark)] = (
                json.loads(path.read_text())['metrics'].get('mIoU') if path.is_file() else None)
    if all(v is None for v in results.values()):
        raise FileNotFoundError(
            f'no {METRICS_FILE} under {root.resolve()}/<method>_vit-b16_<benchmark>/ for '
            f'methods {", ".join(methods)} and benchmarks {", ".join(benchmarks)}; is it '
            f'the folder tools/test.py wrote to?')
    return results


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    return sum(values) / len(values) if values and None not in values else None


def results_table(results: Results,
                  reported: Dict[str, Dict[str, float]] = REPORTED_MIOU) -> Dict[str, str]:
    """Markdown and CSV tables, methods by benchmarks: our mIoU, the reported one and the
    difference per method, with the average over the benchmarks when all are present."""
    methods = list(dict.fromkeys(m for m, _ in results))
    benchmarks = list(dict.fromkeys(b for _, b in results))

    def fmt(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    lines = ['| method | ' + ' | '.join(benchmarks) + ' | average |',
             '|---|' + '---:|' * (len(benchmarks) + 1)]
    rows = []
    notes = []
    for method in methods:
        ours = [results[(method, b)] for b in benchmarks]
        paper = [reported.get(method, {}).get(b) for b in benchmarks]
        diff = [None if o is None or p is None else o - p for o, p in zip(ours, paper)]
        for label, values in ((method, ours), (f'{method} (reported)', paper)):
            lines.append(f'| {label} | ' + ' | '.join(fmt(v) for v in values + [_mean(values)])
                         + ' |')
        lines.append(f'| {method} (difference) | ' + ' | '.join(
            '-' if d is None else f'{d:+.2f}' for d in diff + [
                None if _mean(ours) is None or _mean(paper) is None
                else _mean(ours) - _mean(paper)]) + ' |')
        rows += [[method, b, '' if o is None else f'{o:.4f}', '' if p is None else p]
                 for b, o, p in zip(benchmarks, ours, paper)]
        if method in STATED_AVERAGE and sorted(benchmarks) == sorted(PAPER_BENCHMARKS):
            notes.append(f'{method}: the paper states an average of '
                         f'{STATED_AVERAGE[method]}; the mean of its rounded numbers above '
                         f'is {_mean(paper):.2f}.')
    markdown = '\n'.join(lines) + '\n' + ''.join(f'\n{n}\n' for n in notes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['method', 'benchmark', 'miou', 'reported_miou'])
    writer.writerows(rows)
    return {'markdown': markdown, 'csv': buffer.getvalue()}


def write_summary(work_root: PathLike, out: PathLike, methods: Sequence[str] = ('sfp',),
                  benchmarks: Sequence[str] = PAPER_BENCHMARKS) -> str:
    """Summarise the runs under ``work_root`` into ``out``.md and ``out``.csv."""
    tables = results_table(collect_results(work_root, methods, benchmarks))
    out = Path(out)
    atomic_write_text(out.with_suffix('.md'), tables['markdown'])
    atomic_write_text(out.with_suffix('.csv'), tables['csv'])
    return tables['markdown']


def local_rank_from_args(local_rank: int) -> None:
    """``torch.distributed.launch`` passes --local-rank; torchrun sets LOCAL_RANK."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
