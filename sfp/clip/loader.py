"""Find, download and read OpenAI CLIP checkpoints; build :class:`~sfp.clip.model.CLIP`.

``load('ViT-B/16')`` downloads OpenAI's checkpoint once into ``$SFP_CACHE`` (default
``~/.cache/clip``) and checks the sha256 published in its URL; ``load('/path/x.pt')``
reads a local TorchScript archive (OpenAI's format) or a plain state dict with OpenAI's
key names.  The architecture is read from the weights' shapes, so any ViT size works.
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

from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    UnknownModelError,
)
from .model import CLIP, CLIPConfig, infer_config

_BASE_URL = 'https://openaipublic.azureedge.net/clip/models'
# name -> (sha256, file name); the URL is f'{_BASE_URL}/{sha256}/{file name}'.
_MODELS: Dict[str, tuple] = {
    'ViT-B/32': ('40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af',
                 'ViT-B-32.pt'),
    'ViT-B/16': ('5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f',
                 'ViT-B-16.pt'),
    'ViT-L/14': ('b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836',
                 'ViT-L-14.pt'),
    'ViT-L/14@336px': ('3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02',
                       'ViT-L-14-336px.pt'),
}

# OpenAI's published architectures, for random-weight models (benchmarks, tests).
ARCHITECTURES: Dict[str, CLIPConfig] = {
    'ViT-B/32': CLIPConfig(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    'ViT-B/16': CLIPConfig(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    'ViT-L/14': CLIPConfig(768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
}

PRECISIONS: Dict[str, torch.dtype] = {
    'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
    'fp64': torch.float64}

# Entries of OpenAI's TorchScript state dicts that are not weights.
_NON_WEIGHT_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def available_models() -> list:
    """Names that :func:`load` downloads."""
    return list(_MODELS)


def model_url(name: str) -> str:
    sha256, filename = _MODELS[name]
    return f'{_BASE_URL}/{sha256}/{filename}'


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$SFP_CACHE`` or ``~/.cache/clip``."""
    return Path(os.environ.get('SFP_CACHE') or Path.home() / '.cache' / 'clip').expanduser()


def precision_dtype(precision: Union[str, torch.dtype]) -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' | 'fp64' (or a torch dtype among those) -> dtype."""
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')


def file_sha256(path: Union[str, Path]) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` through a temporary file, checking its sha256.

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
        if got != sha256:
            raise ChecksumMismatchError(
                f'downloaded {url} but its sha256 is {got}, expected {sha256}; the transfer '
                f'was corrupted or the server sent another file. Nothing was kept; try again.')
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_checkpoint(name_or_path: Union[str, Path], download_root: Optional[Union[str, Path]]
                       = None, progress: bool = True) -> Path:
    """Path of a checkpoint: a known model name (downloaded if needed) or a local file."""
    name = str(name_or_path)
    if name in _MODELS:
        sha256, filename = _MODELS[name]
        target = Path(download_root).expanduser() if download_root else cache_dir()
        target = target / filename
        if target.is_file():
            got = file_sha256(target)
            if got != sha256:
                raise ChecksumMismatchError(
                    f'{target} has sha256 {got}, but {name} is published with sha256 '
                    f'{sha256}: it is incomplete or another file. It was left untouched; move '
                    f'it away to download {name} again, or pass its path as clip_path.')
            return target
        try:
            return download(model_url(name), target, sha256, progress)
        except (urllib.error.URLError, OSError) as err:
            if isinstance(err, ChecksumMismatchError):
                raise
            raise CheckpointNotFoundError(
                f'{name} is not in the cache and could not be downloaded from '
                f'{model_url(name)} ({getattr(err, "reason", err)}). Without network, fetch '
                f'that file on another machine and place it at {target} (or set $SFP_CACHE, '
                f'or pass the file path as clip_path).') from err
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointNotFoundError(f'{path} is not a file (a CLIP checkpoint was expected)')
    looks_like_path = (path.suffix in ('.pt', '.pth', '.bin') or name[:1] in './~'
                       or (path.parent != Path('.') and path.parent.is_dir()))
    if looks_like_path:
        raise CheckpointNotFoundError(
            f'no checkpoint at {path.resolve()}. Pass an existing file (TorchScript archive '
            f'or state dict with OpenAI key names) or one of {", ".join(_MODELS)} to download '
            f'it into {cache_dir()}.')
    raise UnknownModelError(
        f'unknown CLIP model {name!r}; known models: {", ".join(_MODELS)}. To use a local '
        f'checkpoint instead, pass its path (there is no file at {path.resolve()}).')


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Weights of a TorchScript archive or of a ``torch.save``-d state dict, on the CPU."""
    path = Path(path)
    try:
        is_torchscript = zipfile.is_zipfile(path) and any(
            '/code/' in n for n in zipfile.ZipFile(path).namelist())
        if is_torchscript:
            state_dict = torch.jit.load(str(path), map_location='cpu').state_dict()
        else:
            state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(
            f'cannot read {path}: it is damaged or not a checkpoint (expected a TorchScript '
            f'archive like OpenAI\'s ViT-B-16.pt or a state dict saved by torch.save): '
            f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path} holds a {type(state_dict).__name__}, not a state dict '
                              f'of tensors')
    return {k: v for k, v in state_dict.items() if k not in _NON_WEIGHT_KEYS}


def build_model(state_dict: Dict[str, torch.Tensor], source: Optional[str] = None) -> CLIP:
    """A CLIP whose architecture and weights come from an OpenAI-named state dict."""
    model = CLIP(infer_config(state_dict, source))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
                   for k, v in expected.items() if k in state_dict and state_dict[k].shape
                   != v.shape]
    problems = []
    for label, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                        ('shape mismatches', wrong_shape)):
        if keys:
            shown = ', '.join(keys[:8]) + (f' ... ({len(keys)} in all)' if len(keys) > 8 else '')
            problems.append(f'{label}: {shown}')
    if problems:
        raise CheckpointError(f'{source or "the state dict"} does not match an OpenAI CLIP '
                              f'ViT: ' + '; '.join(problems))
    model.load_state_dict(state_dict)
    return model


def load(name_or_path: Union[str, Path], device: Union[str, torch.device] = 'cpu',
         precision: Union[str, torch.dtype] = 'fp32',
         download_root: Optional[Union[str, Path]] = None, progress: bool = True) -> CLIP:
    """Load a CLIP ViT in eval mode, frozen, on ``device`` in ``precision``.

    Args:
        name_or_path: one of :func:`available_models` or a checkpoint file.
        device: where the weights go.
        precision: 'fp32', 'fp16', 'bf16' or 'fp64'.
        download_root: cache folder for downloads (default :func:`cache_dir`).
        progress: show a progress bar while downloading.
    """
    dtype = precision_dtype(precision)
    path = resolve_checkpoint(name_or_path, download_root, progress)
    model = build_model(read_state_dict(path), str(path))
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model


def random_model(architecture: str = 'ViT-B/16', seed: int = 0) -> CLIP:
    """A CLIP of a published architecture with random weights (OpenAI's initialisation
    scales), for measuring speed and memory where the real weights are not at hand."""
    if architecture not in ARCHITECTURES:
        raise UnknownModelError(f'unknown architecture {architecture!r}; known: '
                                f'{", ".join(ARCHITECTURES)}')
    generator = torch.Generator().manual_seed(seed)
    model = CLIP(ARCHITECTURES[architecture])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part.startswith('ln') for part in name.split('.')[:-1]):
                param.fill_(1.0 if name.endswith('weight') else 0.0)
            elif name.endswith('bias'):
                param.zero_()
            elif param.dim() > 0:  # the scalar logit_scale keeps its initial value
                fan_in = param.shape[-1]
                param.normal_(0, fan_in ** -0.5, generator=generator)
    return model.eval().requires_grad_(False)
