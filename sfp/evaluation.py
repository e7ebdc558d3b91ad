"""Benchmark evaluation with mmengine's Runner, and the summary table of several runs."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from .datasets import check_dataset_config, check_dataset_files
from .utils import atomic_write_text

PathLike = Union[str, Path]

# Reported mIoU (%) of SFP with CLIP ViT-B/16, no post-processing (the paper's table).
REPORTED_MIOU: Dict[str, float] = {
    'voc21': 62.9, 'context60': 37.2, 'coco_object': 37.9, 'voc20': 84.5, 'context59': 39.9,
    'coco_stuff164k': 26.4, 'cityscapes': 41.1, 'ade20k': 20.8,
}
BENCHMARKS: List[str] = list(REPORTED_MIOU)
METRICS_FILE = 'metrics.json'


class OutputExistsError(FileExistsError):
    """An output folder already holds results that a run would overwrite."""


def _refuse_to_overwrite(folder: Optional[PathLike], option: str, overwrite: bool) -> None:
    if folder and not overwrite and Path(folder).is_dir() and any(Path(folder).iterdir()):
        raise OutputExistsError(f'{option} {folder} already holds files from an earlier run; '
                                f'choose another folder or pass --overwrite')


def build_test_config(config: PathLike, data_root: Optional[str] = None,
                      clip_path: Optional[str] = None, work_dir: Optional[str] = None,
                      cfg_options: Optional[dict] = None, launcher: str = 'none',
                      show_dir: Optional[str] = None, out_dir: Optional[str] = None,
                      overwrite: bool = False) -> Config:
    """Load a config and apply the command-line overrides of tools/test.py."""
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    loader = cfg.test_dataloader
    if loader.get('num_workers', 0) == 0:
        loader.persistent_workers = False  # PyTorch refuses it without workers
    if not torch.cuda.is_available():
        loader.pin_memory = False  # pinning only helps host-to-GPU copies
    if data_root:
        cfg.test_dataloader.dataset.data_root = data_root
    if clip_path:
        cfg.model.clip_path = clip_path
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(Path('work_dirs') / config.stem)
    _refuse_to_overwrite(show_dir, '--show-dir', overwrite)
    _refuse_to_overwrite(out_dir, '--out', overwrite)
    if show_dir:
        cfg.default_hooks.visualization.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    if out_dir:
        cfg.test_evaluator.update(output_dir=out_dir, keep_results=True)
    return cfg


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


def run_test(cfg: Config) -> Dict[str, float]:
    """Evaluate with mmengine's Runner; write the metrics JSON of this run.

    The metrics go to ``<work_dir>/<timestamp>/metrics.json`` (one per run, never
    overwritten) and ``<work_dir>/metrics.json`` (the latest run), both atomically.
    """
    if 'custom_imports' in cfg:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    num_images = check_test_data(cfg)
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


def collect_results(work_dirs: Dict[str, PathLike]) -> Dict[str, Optional[float]]:
    """Latest mIoU of each benchmark's work dir (None when it has no result)."""
    results = {}
    for name, folder in work_dirs.items():
        path = Path(folder) / METRICS_FILE
        results[name] = (json.loads(path.read_text())['metrics'].get('mIoU')
                         if path.is_file() else None)
    return results


def results_table(results: Dict[str, Optional[float]],
                  reported: Dict[str, float] = REPORTED_MIOU) -> Dict[str, str]:
    """Markdown and CSV tables of mIoU per benchmark and the average, reported beside."""
    rows = [(name, miou, reported.get(name)) for name, miou in results.items()]
    measured = [m for _, m, _ in rows if m is not None]
    complete = len(measured) == len(rows) and rows
    average = sum(measured) / len(measured) if complete else None
    paper = [p for _, _, p in rows if p is not None]
    paper_average = sum(paper) / len(paper) if len(paper) == len(rows) and rows else None
    rows.append(('average', average, paper_average))

    def fmt(value: Optional[float]) -> str:
        return '-' if value is None else f'{value:.2f}'

    def delta(m: Optional[float], p: Optional[float]) -> str:
        return '-' if m is None or p is None else f'{m - p:+.2f}'

    lines = ['| benchmark | mIoU (ours) | mIoU (paper) | difference |',
             '|---|---:|---:|---:|']
    lines += [f'| {n} | {fmt(m)} | {fmt(p)} | {delta(m, p)} |' for n, m, p in rows]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['benchmark', 'miou', 'paper_miou'])
    writer.writerows([n, '' if m is None else f'{m:.4f}', '' if p is None else p]
                     for n, m, p in rows)
    return {'markdown': '\n'.join(lines) + '\n', 'csv': buffer.getvalue()}


def write_summary(work_dir_root: PathLike, out: PathLike,
                  benchmarks: Sequence[str] = BENCHMARKS) -> str:
    """Summarise ``<work_dir_root>/<benchmark>`` runs into ``out``.md and ``out``.csv."""
    results = collect_results({b: Path(work_dir_root) / b for b in benchmarks})
    tables = results_table(results)
    out = Path(out)
    atomic_write_text(out.with_suffix('.md'), tables['markdown'])
    atomic_write_text(out.with_suffix('.csv'), tables['csv'])
    return tables['markdown']


def local_rank_from_args(local_rank: int) -> None:
    """``torch.distributed.launch`` passes --local-rank; torchrun sets LOCAL_RANK."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
