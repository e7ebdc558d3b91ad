"""Weights of every tower family (CLIP, DINO, DINOv2, SAM): where they come from and what
they are.

One place for what the families share: the download cache (``$SFP_CACHE``, default
``~/.cache/clip``), downloads with a progress bar written atomically and checked against a
published sha256 (or against the digest recorded at first download, ``<file>.sha256``,
where none is published), reading a state dict from any checkpoint file, precisions, the
errors, and telling the families apart by their key names: each family is a class in
:data:`sfp.registry.WEIGHT_FAMILIES` (``family``, ``recognises``, ``describe``), so a file of
one family given as another is refused with one line that names what it is
(:func:`wrong_family_error`).  The families' own modules (:mod:`sfp.clip.formats`,
:mod:`sfp.vfm.dino`, :mod:`sfp.vfm.dinov2`, :mod:`sfp.vfm.sam`) build on this one; it
imports none of them.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from tqdm import tqdm

from .registry import WEIGHT_FAMILIES
from .utils import atomic_write_text

StateDict = Dict[str, torch.Tensor]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be found, fetched or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path, and none could be downloaded."""


class ChecksumMismatchError(CheckpointError):
    """A file's sha256 differs from the one published (or recorded) for the model."""


class UnknownModelError(CheckpointError, ValueError):
    """A model name that is neither a known model nor an existing file."""


PRECISIONS: Dict[str, torch.dtype] = {
    'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
    'fp64': torch.float64}


def precision_dtype(precision: Union[str, torch.dtype]) -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' | 'fp64' (or a torch dtype among those) -> dtype."""
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$SFP_CACHE`` or ``~/.cache/clip``."""
    return Path(os.environ.get('SFP_CACHE') or Path.home() / '.cache' / 'clip').expanduser()


def file_sha256(path: Union[str, Path]) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_path(name: str) -> bool:
    """Whether a missing checkpoint argument was meant as a file (a weights suffix, a path
    start, or an existing parent folder) rather than a model name."""
    path = Path(name).expanduser()
    return (path.suffix in ('.pt', '.pth', '.bin', '.safetensors') or name[:1] in './~'
            or (path.parent != Path('.') and path.parent.is_dir()))


def download(url: str, target: Path, sha256: Optional[str], progress: bool = True) -> str:
    """Download ``url`` to ``target`` through a temporary file, checking its sha256 (None:
    not published, not checked); returns the file's sha256.

    The target appears only once complete and verified; a failed or mismatching
    download leaves nothing behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + '.', suffix='.part', dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as source:
            total = int(source.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                      desc=f'Downloading {target.name}', disable=not progress) as bar:
                for chunk in iter(lambda: source.read(1 << 20), b''):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise ChecksumMismatchError(
                f'downloaded {url} but its sha256 is {got}, expected {sha256}; the transfer '
                f'was corrupted or the server sent another file. Nothing was kept; try again.')
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return got


def recorded_sha256_path(target: Path) -> Path:
    """Where the sha256 of a downloaded file whose digest is not published is recorded."""
    return target.with_name(target.name + '.sha256')


def cached_download(name: str, url: str, target: Path, sha256: Optional[str],
                    progress: bool = True, argument: str = 'clip_path') -> Path:
    """The published file of model ``name`` at ``target`` (in the cache), downloaded from
    ``url`` on first use.

    A file already there is verified against ``sha256``.  Where no digest is published
    (None), the first file is trusted: its sha256 is recorded beside it
    (``<file>.sha256``) and later uses verify against that record.  Offline, the error
    says which file to place where; ``argument`` names the argument that takes a path
    instead.
    """
    record = recorded_sha256_path(target)
    if target.is_file():
        got = file_sha256(target)
        expected = sha256 or (record.read_text().strip() if record.is_file() else None)
        if expected is None:
            atomic_write_text(record, got + '\n')
        elif got != expected:
            origin = (f'{name} is published with sha256 {expected}' if sha256 else
                      f'it had sha256 {expected} when first used (recorded in {record})')
            raise ChecksumMismatchError(
                f'{target} has sha256 {got}, but {origin}: it is incomplete or another '
                f'file. It was left untouched; move it away to download {name} again, or '
                f'pass its path as {argument}.')
        return target
    try:
        got = download(url, target, sha256, progress)
    except (urllib.error.URLError, OSError) as err:
        if isinstance(err, ChecksumMismatchError):
            raise
        raise CheckpointNotFoundError(
            f'{name} is not in the cache and could not be downloaded from {url} '
            f'({getattr(err, "reason", err)}). Without network, fetch that file on another '
            f'machine and place it at {target} (or set $SFP_CACHE, or pass the file path as '
            f'{argument}).') from err
    if sha256 is None:
        atomic_write_text(record, got + '\n')
    return target


def read_state_dict(path: Union[str, Path], example: str) -> StateDict:
    """Weights of a TorchScript archive, a ``.safetensors`` file or a ``torch.save``-d
    state dict (possibly under ``state_dict``/``model``, keys possibly prefixed with
    ``module.``), on the CPU.  ``example`` names the kind of file expected, for the
    error a damaged or foreign file gets."""
    path = Path(path)
    try:
        if path.suffix == '.safetensors':
            state_dict = _read_safetensors(path)
        elif zipfile.is_zipfile(path) and any(
                '/code/' in n for n in zipfile.ZipFile(path).namelist()):
            state_dict = torch.jit.load(str(path), map_location='cpu').state_dict()
        else:
            state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # torch raises many types for damaged files
        # torch's own text is advice for trusted pickles (weights_only=False) or about its
        # zip reader; neither helps here, so say what the file is not, in our words.
        with open(path, 'rb') as f:
            zipped = f.read(4) == b'PK\x03\x04'  # torch.save and TorchScript write zips
        found = ('a zip archive that is not a whole checkpoint (a truncated download?)'
                 if zipped else 'neither a zip archive nor a tensor file')
        raise CheckpointError(
            f'cannot read {path}: it is damaged or not a checkpoint; it is {found}. Expected '
            f'{example}, a .safetensors file or a state dict saved by torch.save. Download '
            f'it again or give another file') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path} holds a {type(state_dict).__name__}, not a state dict '
                              f'of tensors. Expected {example}')
    if state_dict and all(k.startswith('module.') for k in state_dict):  # DDP training
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict


def _read_safetensors(path: Path) -> StateDict:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise CheckpointError(
            f'{path} is a .safetensors file; reading it needs the safetensors package: '
            f'pip install safetensors (or pip install "sfp[hub]")') from err
    return load_file(str(path), device='cpu')


def weights_family(state_dict: StateDict) -> Optional[type]:
    """The family class of :data:`sfp.registry.WEIGHT_FAMILIES` whose key names a state
    dict has (None: no family's)."""
    WEIGHT_FAMILIES.import_from_location()
    for family in WEIGHT_FAMILIES.module_dict.values():
        if family.recognises(state_dict):
            return family
    return None


def describe_weights(state_dict: StateDict) -> Optional[str]:
    """What a state dict is ('DINO ViT-B/8', 'SAM ViT-B', 'CLIP'), or None."""
    family = weights_family(state_dict)
    return family.describe(state_dict) if family else None


def wrong_family_error(source: Union[str, Path], state_dict: StateDict, expected: str,
                       advice: str) -> CheckpointError:
    """The one-line error for weights given where another family is read: ``source`` is a
    <what it is> checkpoint, not ``expected`` ('a CLIP one', 'a SAM one', 'a vision
    foundation model'), then ``advice``; weights of no known family are named by a few of
    their keys."""
    what = describe_weights(state_dict)
    if what:
        return CheckpointError(f'{source} is a {what} checkpoint, not {expected}: {advice}')
    return CheckpointError(f'{source} is not {expected} (nor any checkpoint this code reads: '
                           f'its keys are e.g. {", ".join(list(state_dict)[:3])}); {advice}')
