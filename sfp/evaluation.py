"""Benchmark evaluation with mmengine's Runner, and the summary table of several runs."""
from __future__ import annotations

import ast
import copy
import csv
import datetime
import functools
import inspect
import io
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dist import barrier, broadcast_object_list, get_rank, get_world_size
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, TestLoop, autocast
from mmengine.visualization import LocalVisBackend
from mmengine.visualization.vis_backend import force_init_env
from mmseg.registry import LOOPS, VISBACKENDS

from .benchmarks import PAPER_BENCHMARKS, REPORTED_TABLES, config_stem, did_you_mean
from .clip import CheckpointError
from .clip.formats import is_clip_state_dict, read_checkpoint, read_state_dict
from .clip.loader import available_models, checkpoint_sha256, resolve_checkpoint
from .datasets import check_dataset_config, check_dataset_files
from .protocols import Protocol, apply_protocol, load_protocol, protocol_root
from .record import (
    RESULT_FILE,
    EvaluationRecord,
    RecordMismatchError,
    RecordWriter,
    file_digest,
    fingerprint,
    image_key,
    image_keys,
    ordered_results,
)
from .utils import atomic_write_png, atomic_write_text
from .vfm.loader import available_vfms, build_vfm, resolve_vfm_checkpoint
from .vfm.sam import load_sam_state_dict

PathLike = Union[str, Path]
METRICS_FILE = 'metrics.json'
# Evaluation logs progress about this many times per run.
PROGRESS_LINES = 10
# Model arguments ending in _path with these suffixes name text files, not weights.
TEXT_SUFFIXES = ('.txt', '.json', '.yaml', '.csv')


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
                      vfm_path: Optional[str] = None, sam_path: Optional[str] = None,
                      resume: bool = True) -> Config:
    """Load a config and apply the command-line overrides of tools/test.py.

    In order: the config, the ``protocol`` (a name, a protocol file or a
    :class:`~sfp.protocols.Protocol`; see :mod:`sfp.protocols`), ``cfg_options``, then
    ``data_root``, ``clip_path``, ``vfm_path`` and ``sam_path``.  ``vfm_path`` applies to a
    config whose method reads a vision foundation model (its model names one) and is
    ignored by the others, so one launch can give it to every method; ``sam_path`` likewise
    to a method that reads SAM (Trident).  A protocol's runs default to the work dir
    ``work_dirs/<protocol>/<config name>``.  ``show_dir`` / ``out_dir`` that already hold
    files are refused unless ``overwrite``, or ``resume`` and the work dir's record was made
    with them.

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
    cfg.setting_weights = weights_arguments(cfg.model)
    if clip_path:
        cfg.model.clip_path = clip_path
    if vfm_path and 'vfm_path' in cfg.model:
        cfg.model.vfm_path = vfm_path
    if sam_path and 'sam_path' in cfg.model:
        cfg.model.sam_path = sam_path
    check_model_arguments(cfg.model)
    cfg.work_dir = work_dir or cfg.get('work_dir') or str(
        protocol_root('work_dirs', cfg.protocol) / config.stem)
    # Folders a resumed run goes on writing to are its own, not an earlier run's.
    cfg.outputs = {option: folder and str(Path(folder).resolve())
                   for option, folder in (('--out', out_dir), ('--show-dir', show_dir))}
    recorded = (EvaluationRecord(cfg.work_dir).setup or {}).get('outputs', {}) \
        if resume else {}
    for option, folder in cfg.outputs.items():
        _refuse_to_overwrite(folder, option,
                             overwrite or (folder and recorded.get(option) == folder))
    if show_dir:
        cfg.default_hooks.visualization.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
        cfg.visualizer.vis_backends = [dict(type='AtomicLocalVisBackend')]
    cfg.test_cfg = dict(cfg.get('test_cfg') or {}, type='RecordedTestLoop', out_dir=out_dir)
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


def build_test_dataset(cfg: Config):
    """The config's test dataset, built; a wrong data root or a missing file fails here
    with the expected layout."""
    dataset_cfg = cfg.test_dataloader.dataset
    check_dataset_config(dataset_cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(dataset_cfg)
    check_dataset_files(dataset)
    return dataset


def check_test_data(cfg: Config) -> int:
    """Fail early, with the expected layout, on a wrong data root or a missing file.

    Returns the number of images.
    """
    return len(build_test_dataset(cfg))


def progress_interval(num_images: int, batch_size: int, world_size: int) -> int:
    """Batches between two progress lines, so that a run logs about PROGRESS_LINES times."""
    batches = math.ceil(num_images / max(1, batch_size * world_size))
    return max(1, batches // PROGRESS_LINES)


def weights_arguments(model_cfg: dict) -> Dict[str, str]:
    """The model arguments that name weights: every ``*_path`` argument with a value other
    than a text file (``name_path``'s class file) -- ``clip_path``, ``vfm_path``, and any
    later one such as ``sam_path``."""
    return {key: value for key, value in model_cfg.items()
            if key.endswith('_path') and isinstance(value, str)
            and Path(value).suffix not in TEXT_SUFFIXES}


def _check_weights_file(argument: str, value: str) -> Optional[Path]:
    """The weights file of one argument, resolved as the model will (names are downloaded
    into the cache), and checked to be the kind of model the argument takes: a swapped
    CLIP / VFM file is one line here, before anything else starts.  None: a name whose
    digest is published (nothing to read)."""
    if argument == 'clip_path':
        if value in available_models():
            return None
        path = resolve_checkpoint(value)
        if not value.startswith('hf-hub:'):
            read_checkpoint(path)  # refuses a VFM (or anything else) given as CLIP
        return path
    if argument == 'sam_path':
        load_sam_state_dict(value)  # refuses a DINO, a CLIP (any other family) given as SAM
        return (resolve_vfm_checkpoint(value) if value in available_vfms()
                else Path(value).expanduser())
    if argument == 'vfm_path' or value in available_vfms():
        path = resolve_vfm_checkpoint(value)
        if value not in available_vfms():
            build_vfm(read_state_dict(path), str(path))  # refuses a CLIP given as VFM
        return path
    path = Path(value).expanduser()
    if not path.is_file():
        return None  # a name another loader resolves
    if is_clip_state_dict(read_state_dict(path)):
        raise CheckpointError(f'{path} is a CLIP checkpoint, given as {argument}: give it '
                              f'as clip_path, and as {argument} the weights it names')
    return path


def weights_files(model_cfg: dict) -> Dict[str, Dict[str, Optional[str]]]:
    """Every weights argument of a model (:func:`weights_arguments`) as the run records
    it: ``{argument: {'name': given, 'file': resolved file, 'sha256': its digest}}``.

    Checks each file first (:func:`_check_weights_file`); raises CheckpointError or
    FileNotFoundError with one line naming the argument's file.
    """
    files = {}
    for argument, value in weights_arguments(model_cfg).items():
        path = _check_weights_file(argument, value)
        digest = checkpoint_sha256(value) if path is None else file_digest(path)
        files[argument] = dict(name=value, file=None if path is None else str(path.resolve()),
                               sha256=digest)
    return files


class EvaluationRunner(Runner):
    """mmengine's Runner whose console shows errors only, unless the config says
    ``verbose=True``: the environment, the config, mmengine's warnings and its progress
    lines go to the log file (``<work_dir>/<timestamp>/<timestamp>.log``) either way."""

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        if not self.cfg.get('verbose'):
            for handler in logger.handlers:
                if not isinstance(handler, logging.FileHandler):
                    handler.setLevel(logging.ERROR)
        return logger


@VISBACKENDS.register_module()
class AtomicLocalVisBackend(LocalVisBackend):
    """mmengine's LocalVisBackend writing each image atomically, one file per image named
    after it (``--show-dir``): a killed or resumed run leaves whole files and no repeats."""

    @force_init_env
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs) -> None:
        atomic_write_png(Path(self._img_save_dir) / f'{Path(name).stem}.png',
                         cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


@LOOPS.register_module()
class RecordedTestLoop(TestLoop):
    """mmengine's TestLoop over the images the work dir's record lacks (:mod:`sfp.record`).

    Each image's metric results go to the record (durably, in small groups) instead of
    staying in memory; the metrics are computed from the whole record, in the dataset's
    order, on rank 0.  ``out_dir``: each prediction as a label-map PNG, written atomically.
    """

    def __init__(self, runner, dataloader: dict, evaluator, fp16: bool = False,
                 out_dir: Optional[str] = None):
        from mmseg.registry import DATASETS

        self.record = EvaluationRecord(runner.work_dir)
        dataloader = copy.deepcopy(dataloader)
        dataset = DATASETS.build(dataloader['dataset'])
        self.keys = image_keys(dataset)
        self.root = dataset.data_root
        pending = [None]
        if get_rank() == 0:
            self.record.folder.mkdir(parents=True, exist_ok=True)
            done = self.record.read(repair=True)
            pending = [[i for i, key in enumerate(self.keys) if key not in done]]
        broadcast_object_list(pending)
        self.restored = len(self.keys) - len(pending[0])
        dataloader['dataset'] = dataset.get_subset(pending[0])
        super().__init__(runner, dataloader, evaluator, fp16)
        self.out_dir = out_dir

    def run(self) -> dict:
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self.writer = RecordWriter(self.record.folder, self.runner.timestamp, get_rank())
        progress = Progress(len(self.keys), self.restored,
                            self.dataloader.batch_size * get_world_size(),
                            len(self.dataloader))
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
            progress.update(idx + 1)
        self.writer.flush()
        barrier()
        metrics = [self.compute_metrics() if get_rank() == 0 else None]
        broadcast_object_list(metrics)
        self.runner.call_hook('after_test_epoch', metrics=metrics[0])
        self.runner.call_hook('after_test')
        return metrics[0]

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = self.runner.model.test_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        if self.out_dir:
            for sample in outputs:
                write_label_map(sample, self.out_dir)
        self.runner.call_hook('after_test_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)
        per_metric = []
        for metric in self.evaluator.metrics:  # the results this batch added, one per image
            per_metric.append(metric.results[:] or [None] * len(outputs))
            metric.results.clear()
        for i, sample in enumerate(outputs):
            self.writer.add(image_key(sample.img_path, self.root),
                            [results[i] for results in per_metric])

    def compute_metrics(self) -> Dict[str, float]:
        """Every metric over the whole record, the images in the dataset's order."""
        results = ordered_results(self.record.read(), self.keys)
        metrics = {}
        for i, metric in enumerate(self.evaluator.metrics):
            values = metric.compute_metrics([image[i] for image in results])
            metrics.update({f'{metric.prefix}/{k}' if metric.prefix else k: v
                            for k, v in values.items()})
        return metrics


def write_label_map(sample, out_dir: PathLike) -> None:
    """A prediction as mmseg's ``IoUMetric(output_dir=...)`` saves it (``<image name>.png``,
    the dataset's labels), written atomically."""
    labels = sample.pred_sem_seg.data.squeeze().cpu().numpy()
    if sample.get('reduce_zero_label', False):
        labels = labels + 1
    name = Path(sample.img_path).stem
    atomic_write_png(Path(out_dir) / f'{name}.png', labels.astype(np.uint8))


class Progress:
    """Images done out of the total (those restored from the record included), printed
    by rank 0 about PROGRESS_LINES times a run, with the rate and the time left."""

    def __init__(self, total: int, restored: int, images_per_batch: int, batches: int):
        self.total, self.restored, self.per_batch = total, restored, images_per_batch
        self.batches = batches
        self.every = max(1, batches // PROGRESS_LINES)
        self.start = time.monotonic()
        if restored:
            self.show(f'{restored}/{total} images restored from the record; evaluating '
                      f'the other {total - restored}')

    def update(self, batches_done: int) -> None:
        if batches_done % self.every and batches_done != self.batches:
            return
        evaluated = min(self.total - self.restored, batches_done * self.per_batch)
        rate = evaluated / max(time.monotonic() - self.start, 1e-9)
        left = (self.total - self.restored - evaluated) / rate if rate else 0
        self.show(f'{self.restored + evaluated}/{self.total} images, {rate:.2f} images/s, '
                  f'{datetime.timedelta(seconds=round(left))} left')

    @staticmethod
    def show(text: str) -> None:
        if get_rank() == 0:
            print(text, flush=True)


def run_test(cfg: Config, resume: bool = True, verbose: bool = False) -> Dict[str, float]:
    """Evaluate with mmengine's Runner, resuming from the work dir's per-image record.

    Before the Runner starts, the data and every weights file are checked (one line for a
    wrong root or a swapped file), and the record is opened: with ``resume`` (the
    default), images it holds are not evaluated again, a record of another setup is a
    :class:`~sfp.record.RecordMismatchError`, and a finished record's metrics are
    returned at once; without it, an earlier record is set aside (``record-<time>``) and
    a new one begun.  The metrics go to ``<work_dir>/<timestamp>/metrics.json`` (one per
    run, never overwritten) and ``<work_dir>/metrics.json`` (the latest run), atomically.
    ``verbose``: mmengine's environment and config dump on the console too.
    """
    if 'custom_imports' in cfg:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    dataset = build_test_dataset(cfg)
    keys = image_keys(dataset)
    weights = weights_files(cfg.model)
    record = EvaluationRecord(cfg.work_dir)
    rank = launch_rank(cfg.launcher)
    stored = record.setup
    outputs = cfg.get('outputs', {})
    if stored is not None and resume:
        record.check(fingerprint(cfg, weights, keys))
        _check_outputs(record, stored, outputs)
        if record.result is not None:
            return _finished(cfg, record, rank)
    elif stored is not None and rank == 0:
        print(f'--no-resume: the earlier record is kept as {record.set_aside()}')
    if rank == 0 and (stored is None or not resume):
        record.create(fingerprint(cfg, weights, keys), outputs, len(keys))
    world_size = int(os.environ.get('WORLD_SIZE', 1)) if cfg.launcher != 'none' else 1
    cfg.default_hooks.logger.interval = progress_interval(
        len(keys), cfg.test_dataloader.get('batch_size', 1), world_size)
    cfg.test_cfg = dict(cfg.get('test_cfg') or {}, type='RecordedTestLoop')
    cfg.verbose = verbose
    if (cfg.launcher == 'pytorch' and not torch.cuda.is_available()
            and not torch.distributed.is_initialized()):
        # mmengine's launcher pins a CUDA device per process; on CPUs start gloo here.
        torch.distributed.init_process_group(backend='gloo')
    with warnings.catch_warnings():
        if not verbose:  # mmseg's note that --show-dir was not given
            warnings.filterwarnings('ignore', 'The draw is False')
        runner = EvaluationRunner.from_cfg(cfg)
    metrics = runner.test()
    if get_rank() == 0:
        summary = dict(config=str(cfg.filename), protocol=cfg.get('protocol'),
                       dataset=cfg.test_dataloader.dataset.type,
                       data_root=str(cfg.test_dataloader.dataset.data_root),
                       clip_path=str(cfg.model.get('clip_path')),
                       setting_clip_path=str(cfg.get('setting_clip_path',
                                                     cfg.model.get('clip_path'))),
                       weights=weights,
                       setting_weights=cfg.get('setting_weights', {}),
                       num_images=len(keys),
                       timestamp=runner.timestamp,
                       metrics={k: float(v) for k, v in metrics.items()})
        text = json.dumps(summary, indent=2) + '\n'
        atomic_write_text(Path(cfg.work_dir) / runner.timestamp / METRICS_FILE, text)
        atomic_write_text(Path(cfg.work_dir) / METRICS_FILE, text)
        atomic_write_text(record.folder / RESULT_FILE, text)
        loop = runner.test_loop
        print(f'{result_line(summary["metrics"])} over {len(keys)} images ({loop.restored} '
              f'from the record, {len(keys) - loop.restored} evaluated now); written: '
              f'{Path(cfg.work_dir) / METRICS_FILE}', flush=True)
    return metrics


def launch_rank(launcher: str) -> int:
    """This process's rank before mmengine sets up the process group: from torchrun's,
    slurm's or Open MPI's environment."""
    if launcher == 'none':
        return 0
    variable = {'slurm': 'SLURM_PROCID', 'mpi': 'OMPI_COMM_WORLD_RANK'}.get(launcher, 'RANK')
    return int(os.environ.get(variable, 0))


def result_line(metrics: Dict[str, float]) -> str:
    """'mIoU 12.34, mAcc 20.00, aAcc 50.00'."""
    return ', '.join(f'{k} {v:.2f}' for k, v in metrics.items())


def _check_outputs(record: EvaluationRecord, stored: dict,
                   outputs: Dict[str, Optional[str]]) -> None:
    """Resuming with --out / --show-dir needs the folder the recorded images went to."""
    for option, folder in outputs.items():
        earlier = stored.get('outputs', {}).get(option)
        if folder and folder != earlier and record.done():
            raise RecordMismatchError(
                f'{record.folder} holds images evaluated '
                f'{f"with {option} {earlier}" if earlier else f"without {option}"}, whose '
                f'outputs would be missing from {folder}: give the same {option}, or pass '
                f'--no-resume to evaluate every image again')


def _finished(cfg: Config, record: EvaluationRecord, rank: int) -> Dict[str, float]:
    """A finished record's metrics, printed at once (and restored as the work dir's
    metrics.json if that is gone)."""
    result = record.result
    if rank == 0:
        latest = Path(cfg.work_dir) / METRICS_FILE
        if not latest.is_file():
            atomic_write_text(latest, json.dumps(result, indent=2) + '\n')
        print(f'{result_line(result["metrics"])} over {result["num_images"]} images: '
              f'already evaluated ({record.folder}; --no-resume evaluates again)', flush=True)
    return result['metrics']


Record = Dict[str, object]


def read_record(work_dir: PathLike) -> Optional[Record]:
    """The latest run's record in a work dir (``metrics.json``), or None."""
    path = Path(work_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_run(work_dir: PathLike) -> Optional[Record]:
    """The state of a work dir's evaluation for a summary: ``{'partial': [done, total]}``
    while its per-image record is unfinished (a killed run, or one still going), else the
    latest run's record (None: never run)."""
    record = EvaluationRecord(work_dir)
    setup = record.setup
    if setup is not None and record.result is None:
        return {'partial': [record.done(), setup['num_images']]}
    return read_record(work_dir)


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
        return None if run is None else run.get('metrics', {}).get('mIoU')

    def partial(self, benchmark: str) -> Optional[str]:
        """'done/total' images of a benchmark whose run is not finished, else None."""
        run = self.runs.get(benchmark) or {}
        return '/'.join(map(str, run['partial'])) if 'partial' in run else None


def run_methods(work_root: PathLike, benchmarks: Sequence[str],
                protocol: Optional[str] = None) -> List[str]:
    """The methods with a run of any of ``benchmarks`` under ``work_root`` (finished or
    partial), in the framework's order."""
    from .apis import available_methods

    root = protocol_root(work_root, protocol)
    return [m for m in available_methods()
            if any(read_run(root / config_stem(m, b)) is not None for b in benchmarks)]


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
            method, {b: read_run(root / config_stem(method, b)) for b in benchmarks},
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


def _weights_swaps(run: Record) -> List[tuple]:
    """(argument, used, setting's) for each weights argument of a run given other weights
    than its setting names (``--clip-path`` / ``--vfm-path`` over the config's); the same
    file under another name is the same."""
    weights = run.get('weights') or {'clip_path': {'name': run.get('clip_path')}}
    settings = run.get('setting_weights') or {'clip_path': run.get('setting_clip_path')}
    swaps = []
    for argument, used in weights.items():
        setting = settings.get(argument)
        if setting in (None, 'None') or used['name'] == setting:
            continue
        if (used.get('sha256') or _weights_id(str(used['name']))) != _weights_id(str(setting)):
            swaps.append((argument, str(used['name']), str(setting)))
    return swaps


def other_weights_note(rows: Sequence[SummaryRow], reference_label: str) -> Optional[str]:
    """A note when runs used other weights than their setting names."""
    swaps = sorted({swap for row in rows for run in row.runs.values()
                    if run and 'partial' not in run for swap in _weights_swaps(run)})
    if not swaps:
        return None
    used = '; '.join(f'{argument} {used} instead of {setting}'
                     for argument, used, setting in swaps)
    return (f'Our numbers come from other weights than their setting names ({used}): '
            f'they are not comparable with the rows marked ({reference_label}), and on '
            f'random weights (such as the tests\' tiny CLIP) they are meaningless.')


def weights_used_note(rows: Sequence[SummaryRow]) -> Optional[str]:
    """Every weights file the runs read (each model argument naming weights: CLIP, the
    VFM, ...), with the start of its sha256, as their metrics.json records them."""
    used = sorted({(argument, str(w['name']), (w.get('sha256') or 'not hashed')[:12])
                   for row in rows for run in row.runs.values()
                   for argument, w in ((run or {}).get('weights') or {}).items()})
    if not used:
        return None
    return 'Weights: ' + '; '.join(f'{argument} {name} (sha256 {digest})'
                                   for argument, name, digest in used) + '.'


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
        partial = [row.partial(b) for b in benchmarks]
        lines.append(f'| {row.label} | ' + ' | '.join(
            f'partial {p}' if p else fmt(v) for v, p in zip(ours, partial))
            + f' | {fmt(_mean(ours))} |')
        lines.append(f'| {row.label} ({reference_label}) | ' + ' | '.join(
            fmt(v) for v in reference + [_mean(reference)]) + ' |')
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
    if any(row.partial(b) for row in rows for b in benchmarks):
        all_notes.append('partial d/t: the run has evaluated d of its t images so far (killed, '
                         'or still going); running its command again finishes it.')
    all_notes += [n for n in (other_weights_note(rows, reference_label),
                              weights_used_note(rows)) if n] + list(notes)
    markdown = '\n'.join(lines) + '\n' + ''.join(f'\n{n}\n' for n in all_notes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow([first_column, 'benchmark', 'miou', f'{reference_label}_miou'])
    writer.writerows(csv_rows)
    return {'markdown': markdown, 'csv': buffer.getvalue()}


def _cells(csv_text: str) -> set:
    """(row, benchmark) of each result a summary CSV holds."""
    rows = list(csv.reader(io.StringIO(csv_text)))[1:]
    return {(row[0], row[1]) for row in rows if len(row) > 2 and row[2]}


def write_tables(tables: Dict[str, str], out: PathLike) -> None:
    """``out``.md and ``out``.csv, atomically.  A summary is never replaced by one with
    less: where the earlier ``out``.csv holds results these tables lack, the earlier pair
    is kept as ``out``.previous.md / .csv, and a note on stderr names what it had."""
    out = Path(out)
    old_csv = out.with_suffix('.csv')
    lost = sorted(_cells(old_csv.read_text()) - _cells(tables['csv'])) \
        if old_csv.is_file() else []
    if lost:
        for suffix in ('.md', '.csv'):
            if out.with_suffix(suffix).is_file():
                os.replace(out.with_suffix(suffix), out.with_name(f'{out.name}.previous{suffix}'))
        print(f'note: the earlier {out}.md also had {", ".join(" on ".join(c) for c in lost)}; '
              f'it is kept as {out}.previous.md (and .csv)', file=sys.stderr)
    atomic_write_text(out.with_suffix('.md'), tables['markdown'])
    atomic_write_text(out.with_suffix('.csv'), tables['csv'])


def write_summary(work_root: PathLike, out: Optional[PathLike] = None,
                  methods: Optional[Sequence[str]] = None,
                  benchmarks: Sequence[str] = PAPER_BENCHMARKS,
                  protocol: Union[str, Path, Protocol, None] = None) -> str:
    """Summarise the runs under ``work_root`` (under ``protocol``: its runs, beside the
    protocol's reference numbers) into ``out``.md and ``out``.csv (default
    ``<work_root>[/<protocol>]/summary``; see :func:`write_tables`).  ``methods``: the
    rows (default: every method with a run there)."""
    name, reference, notes = None, 'release', []
    if protocol is not None:
        protocol = load_protocol(protocol)
        name, reference = protocol.name, protocol.reference
        notes.append(f'Protocol: {protocol.argument} (every method under one setting; see '
                     f'docs/protocols.md).')
    methods = list(methods or run_methods(work_root, benchmarks, name) or ['sfp'])
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
