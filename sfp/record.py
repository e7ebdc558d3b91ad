"""The per-image record of an evaluation, kept in its work dir so that a killed run resumes.

A metric such as mmseg's ``IoUMetric`` is a sum of per-image counts (the per-class
intersection, union, prediction and label areas).  While tools/test.py evaluates, every
process appends each image's counts to its own file under ``<work_dir>/record/``::

    record/setup.json                what the counts belong to (see :func:`fingerprint`)
    record/images-<run>-<rank>.jsonl one line per image: crc32, then the image and its counts
    record/result.json               the finished run's metrics (the record is complete)

Lines are written in small groups, each flushed and fsynced; a line cut off by a kill, or
damaged later, fails its checksum and is dropped on reading with a warning (that image is
evaluated again), never misread.  Files are per process and per run, and lines name their
image, so a resumed run may use any number of processes.  The final metrics sum the counts of every
image in the dataset's order, as an uninterrupted run does, so they equal its metrics to
the last digit.

A record is refused for another setup: the config after overrides, the weights (sha256
of each file), the data root, the file list and the metric's code are compared key by
key, and the first difference is named (:class:`RecordMismatchError`).
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import inspect
import io
import json
import os
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .clip.loader import file_sha256
from .utils import atomic_write_text

PathLike = Union[str, Path]
RECORD_DIR = 'record'
SETUP_FILE = 'setup.json'
RESULT_FILE = 'result.json'
PART_GLOB = 'images-*.jsonl'
#: Version of the record's layout and of how it is compared; a record of another version
#: is refused like any other change.
RECORD_FORMAT = 1
#: A process writes its buffered lines once it holds this many, or its oldest is this old.
GROUP_IMAGES = 8
GROUP_SECONDS = 5.0
#: Fault injection for the tests: ``<images>[:torn|:synced]`` (comma-separated, one per
#: rank) makes a process SIGKILL itself once it has recorded that many images, either right
#: after fsyncing them (synced, the default) or halfway through writing the last one (torn).
KILL_ENV = 'SFP_RECORD_KILL'
#: Config sections whose values decide the counts; output options inside them are not
#: part of the setup.
SETUP_SECTIONS = ('model', 'test_dataloader.dataset', 'test_evaluator')
NOT_SETUP = ('test_dataloader.dataset.data_root', 'test_evaluator.output_dir',
             'test_evaluator.keep_results')


class RecordMismatchError(ValueError):
    """A record belongs to another evaluation than the one asked for."""


# --------------------------------------------------------------------------- setup
def file_digest(path: PathLike) -> str:
    """A file's sha256, computed once per process for a file unchanged since."""
    path = Path(path)
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _leaf(value: Any) -> str:
    """A config value as compared: a file by its content, anything else by its text."""
    if isinstance(value, str) and os.sep in value and Path(value).is_file():
        return f'file with sha256 {file_digest(value)}'
    return json.dumps(value, sort_keys=True, default=str)


def _flatten(node: Any, prefix: str, out: Dict[str, str]) -> None:
    if isinstance(node, dict):
        for key in sorted(node, key=str):
            _flatten(node[key], f'{prefix}.{key}', out)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _flatten(item, f'{prefix}[{i}]', out)
    else:
        out[prefix] = _leaf(node)


def _section(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split('.'):
        node = node.get(part) if hasattr(node, 'get') else None
    return node


def metric_code(evaluator_cfg: Union[dict, List[dict]]) -> Dict[str, str]:
    """metric type -> sha256 of its class's source and mmseg's version."""
    import mmseg
    from mmseg.registry import METRICS

    cfgs = evaluator_cfg if isinstance(evaluator_cfg, (list, tuple)) else [evaluator_cfg]
    code = {}
    for cfg in cfgs:
        with METRICS.switch_scope_and_registry('mmseg') as registry:
            cls = registry.get(cfg['type'])
        source = ''.join(inspect.getsource(c) for c in cls.__mro__
                         if c.__module__.startswith(('mmseg', 'sfp')))
        code[f'metric code {cfg["type"]}'] = (
            f'mmseg {mmseg.__version__}, source sha256 '
            f'{hashlib.sha256(source.encode()).hexdigest()[:16]}')
    return code


def fingerprint(cfg: Any, weights: Dict[str, Dict[str, Optional[str]]],
                image_keys: Sequence[str]) -> Dict[str, str]:
    """What an evaluation's counts depend on, as ``{what: value}`` to compare key by key.

    ``weights`` is :func:`sfp.evaluation.weights_files`' answer (compared by sha256, so a
    copy of the same file elsewhere is the same setup); ``image_keys`` the dataset's
    images, in order.  Config values naming a file are compared by content.
    """
    values = {'record format': str(RECORD_FORMAT)}
    flat: Dict[str, str] = {}
    for section in SETUP_SECTIONS:
        _flatten(_section(cfg, section), section, flat)
    for key in [*NOT_SETUP, *(f'model.{arg}' for arg in weights)]:
        flat.pop(key, None)
    values.update((f'config {k}', v) for k, v in flat.items())
    values.update((f'weights model.{arg}', f'sha256 {w["sha256"]}' if w['sha256']
                   else f'{w["name"]} (no file to hash)') for arg, w in weights.items())
    data_root = cfg.test_dataloader.dataset.get('data_root') or ''
    values['data root'] = str(Path(data_root).expanduser().resolve())
    listing = hashlib.sha256('\n'.join(image_keys).encode()).hexdigest()[:16]
    values['file list'] = f'{len(image_keys)} images, sha256 {listing}'
    values.update(metric_code(cfg.test_evaluator))
    return values


def image_key(img_path: str, data_root: Optional[str]) -> str:
    """An image as the record names it: its path under the data root."""
    return os.path.relpath(img_path, data_root) if data_root else img_path


def image_keys(dataset) -> List[str]:
    """Each image of a dataset, in order, as the record names it."""
    return [image_key(dataset.get_data_info(i)['img_path'], dataset.data_root)
            for i in range(len(dataset))]


# --------------------------------------------------------------------------- lines
def _encode(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {'tensor': str(value.dtype).removeprefix('torch.'),
                'shape': list(value.shape), 'data': value.flatten().tolist()}
    if isinstance(value, np.ndarray):
        return {'array': str(value.dtype), 'shape': list(value.shape),
                'data': value.flatten().tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {'tuple': [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {'dict': {k: _encode(v) for k, v in value.items()}}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if 'tensor' in value:
        return torch.tensor(value['data'], dtype=getattr(torch, value['tensor'])).reshape(
            value['shape'])
    if 'array' in value:
        return np.array(value['data'], dtype=value['array']).reshape(value['shape'])
    if 'tuple' in value:
        return tuple(_decode(v) for v in value['tuple'])
    return {k: _decode(v) for k, v in value['dict'].items()}


def encode_line(image: str, results: Sequence[Any]) -> bytes:
    """One image's line: its crc32, then ``{"image": ..., "results": [per metric]}``."""
    body = json.dumps({'image': image, 'results': _encode(list(results))},
                      separators=(',', ':')).encode()
    return b'%08x %s\n' % (zlib.crc32(body), body)


def decode_line(line: bytes) -> Optional[Tuple[str, list]]:
    """(image, results) of a whole, undamaged line; None for anything else."""
    crc, _, body = line.rstrip(b'\n').partition(b' ')
    try:
        if int(crc, 16) != zlib.crc32(body) or len(crc) != 8:
            return None
        entry = json.loads(body)
        return entry['image'], _decode(entry['results'])
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- record
class EvaluationRecord:
    """The record folder of one work dir: its setup, the images done, the result."""

    def __init__(self, work_dir: PathLike):
        self.folder = Path(work_dir) / RECORD_DIR

    @property
    def setup(self) -> Optional[dict]:
        path = self.folder / SETUP_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def result(self) -> Optional[dict]:
        path = self.folder / RESULT_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def check(self, values: Dict[str, str]) -> None:
        """Refuse a setup other than the record's, naming the first difference."""
        stored = self.setup['fingerprint']
        for key in [*stored, *(k for k in values if k not in stored)]:
            old, new = stored.get(key, '(absent)'), values.get(key, '(absent)')
            if old != new:
                raise RecordMismatchError(
                    f'{self.folder} holds the per-image record of another setup ({key}: '
                    f'{_short(old)} there, {_short(new)} now); to start afresh pass '
                    f'--no-resume (the record is kept beside it) or use another --work-dir')

    def create(self, values: Dict[str, str], outputs: Dict[str, Optional[str]],
               num_images: int) -> None:
        atomic_write_text(self.folder / SETUP_FILE, json.dumps(dict(
            fingerprint=values, outputs=outputs, num_images=num_images), indent=1) + '\n')

    def set_aside(self) -> Path:
        """Rename the record to ``record-<UTC time>`` (a fresh start keeps the old one)."""
        stamp = datetime.datetime.now(datetime.UTC).strftime('%Y%m%d_%H%M%S_%f')
        target = self.folder.with_name(f'{RECORD_DIR}-{stamp}')
        self.folder.rename(target)
        return target

    def read(self, repair: bool = False) -> Dict[str, list]:
        """image -> its results, over every file (the first line of an image wins).

        Damaged lines are dropped with a warning naming how many images will be evaluated
        again; with ``repair`` their files are rewritten without them (atomically), so the
        warning is given once.
        """
        entries: Dict[str, list] = {}
        for path in sorted(self.folder.glob(PART_GLOB)):
            data = path.read_bytes()
            lines = data.splitlines(keepends=True)
            good, dropped = [], 0
            for line in lines:
                entry = decode_line(line)
                if entry is None:
                    dropped += 1
                    continue
                good.append(line if line.endswith(b'\n') else line + b'\n')
                entries.setdefault(*entry)
            if dropped:
                print(f'warning: {path}: {dropped} damaged line(s) dropped (a write cut off '
                      f'by a kill?); {dropped} image(s) will be evaluated again',
                      file=sys.stderr, flush=True)
                if repair:
                    atomic_write_text(path, b''.join(good).decode())
        return entries

    def done(self) -> int:
        """How many images the record holds."""
        with contextlib.redirect_stderr(io.StringIO()):  # damage is reported on resuming
            return len(self.read()) if self.folder.is_dir() else 0


def _short(value: str, width: int = 120) -> str:
    return value if len(value) <= width else value[:width - 3] + '...'


class RecordWriter:
    """Appends one process's lines to its own file, in fsynced groups."""

    def __init__(self, folder: PathLike, run: str, rank: int = 0,
                 group: int = GROUP_IMAGES, seconds: float = GROUP_SECONDS):
        self.path = Path(folder) / f'images-{run}-{rank}-{os.getpid()}.jsonl'
        self.group, self.seconds = group, seconds
        self.pending: List[bytes] = []
        self.since = 0.0
        self.count = 0
        self.kill = _kill_point(rank)

    def add(self, image: str, results: Sequence[Any]) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(encode_line(image, results))
        self.count += 1
        if self.kill and self.count == self.kill[0]:
            self._die(torn=self.kill[1] == 'torn')
        if len(self.pending) >= self.group or time.monotonic() - self.since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._write(b''.join(self.pending))
            self.pending.clear()

    def _write(self, data: bytes) -> None:
        with open(self.path, 'ab') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _die(self, torn: bool) -> None:
        last = self.pending.pop() if torn else b''
        self.flush()
        self._write(last[:len(last) // 2])
        os.kill(os.getpid(), signal.SIGKILL)


def _kill_point(rank: int) -> Optional[Tuple[int, str]]:
    points = [p for p in os.environ.get(KILL_ENV, '').split(',') if p]
    if rank >= len(points):
        return None
    images, _, mode = points[rank].partition(':')
    return int(images), mode or 'synced'


def ordered_results(entries: Dict[str, list], keys: Iterable[str]) -> List[list]:
    """Each image's results in the dataset's order; a missing image is an error."""
    keys = list(keys)
    missing = [k for k in keys if k not in entries]
    if missing:
        raise RuntimeError(f'the record lacks {len(missing)} of {len(keys)} images '
                           f'(e.g. {missing[0]}); rerun to evaluate them')
    return [entries[k] for k in keys]
