"""Find, download and read CLIP checkpoints; build :class:`~sfp.clip.model.CLIP`.

``load('ViT-B/16')`` downloads OpenAI's checkpoint once into ``$SFP_CACHE`` (default
``~/.cache/clip``) and checks the sha256 published in its URL; ``load('hf-hub:org/repo')``
downloads a Hugging Face hub repository's config and weights through ``huggingface_hub``
(into its own cache); ``load('/path/x.pt')`` reads a local TorchScript archive (OpenAI's
format) or a plain state dict with OpenAI's key names, and ``load('/path/folder')`` a
Hugging Face transformers or open_clip folder (see :mod:`sfp.clip.formats`).  Sizes are
read from the weights' shapes, so any ViT size works.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from tqdm import tqdm

from ..utils import atomic_write_text
from .errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    UnknownModelError,
)
from .formats import (
    HF_CONFIG,
    HF_WEIGHTS,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    find_weights,
    read_checkpoint,
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

HF_HUB_PREFIX = 'hf-hub:'


def available_models() -> list:
    """OpenAI model names that :func:`load` downloads (``hf-hub:<org>/<repo>`` names work
    too, for CLIP repositories on the Hugging Face hub)."""
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


def looks_like_path(name: str) -> bool:
    """Whether a missing checkpoint argument was meant as a file (a weights suffix, a path
    start, or an existing parent folder) rather than a model name."""
    path = Path(name).expanduser()
    return (path.suffix in ('.pt', '.pth', '.bin', '.safetensors') or name[:1] in './~'
            or (path.parent != Path('.') and path.parent.is_dir()))


def checkpoint_sha256(name_or_path: Union[str, Path]) -> Optional[str]:
    """The sha256 of the weights an OpenAI model name stands for (the published one) or of
    a local file; None for anything else (hub names, folders, missing files)."""
    name = str(name_or_path)
    if name in _MODELS:
        return _MODELS[name][0]
    path = Path(name).expanduser()
    return file_sha256(path) if path.is_file() else None


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


def resolve_checkpoint(name_or_path: Union[str, Path], download_root: Optional[Union[str, Path]]
                       = None, progress: bool = True) -> Path:
    """Path of a checkpoint's weights file: an OpenAI model name (downloaded if needed),
    ``hf-hub:<org>/<repo>`` (downloaded through huggingface_hub if needed), a local file,
    or a Hugging Face / open_clip folder (its weights file, beside its config)."""
    name = str(name_or_path)
    if name.startswith(HF_HUB_PREFIX):
        return download_hf_hub(name[len(HF_HUB_PREFIX):], download_root, progress)
    if name in _MODELS:
        sha256, filename = _MODELS[name]
        target = Path(download_root).expanduser() if download_root else cache_dir()
        return cached_download(name, model_url(name), target / filename, sha256, progress)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        try:
            return find_weights(path)
        except CheckpointError as err:
            raise CheckpointNotFoundError(str(err)) from None
    if path.exists():
        raise CheckpointNotFoundError(f'{path} is not a file or folder (a CLIP checkpoint was '
                                      f'expected)')
    if looks_like_path(name):
        raise CheckpointNotFoundError(
            f'no checkpoint at {path.resolve()}. Pass an existing file (TorchScript archive '
            f'or state dict with OpenAI key names), a Hugging Face or open_clip folder, '
            f'hf-hub:<org>/<repo>, or one of {", ".join(_MODELS)} to download it into '
            f'{cache_dir()}.')
    raise UnknownModelError(
        f'unknown CLIP model {name!r}; known models: {", ".join(_MODELS)}, or '
        f'hf-hub:<org>/<repo> from the Hugging Face hub. To use a local checkpoint instead, '
        f'pass its path (there is no file at {path.resolve()}).')


class _SilentProgress(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs['disable'] = True
        super().__init__(*args, **kwargs)


def download_hf_hub(repo_id: str, download_root: Optional[Union[str, Path]] = None,
                    progress: bool = True) -> Path:
    """Download a hub repository's CLIP config and one weights file, return the weights
    file: open_clip's where a repository has both formats (LAION's have), safetensors
    before pickle, nothing else (no second format, no flax or tokenizer files).

    Files go to huggingface_hub's cache (``$HF_HUB_CACHE``) unless ``download_root`` is
    given; a second call finds them there without network.
    """
    try:
        import huggingface_hub
    except ImportError as err:
        raise CheckpointError(
            f'hf-hub:{repo_id} needs the huggingface_hub package: pip install '
            f'huggingface_hub safetensors (or pip install "sfp[hub]"), or download the '
            f'repository elsewhere and pass its folder as clip_path') from err
    options = dict(repo_id=repo_id, cache_dir=str(download_root) if download_root else None)
    if not progress:
        options['tqdm_class'] = _SilentProgress
    url = f'https://huggingface.co/{repo_id}'
    try:
        folder = Path(huggingface_hub.snapshot_download(
            allow_patterns=[OPEN_CLIP_CONFIG, HF_CONFIG], **options))
        weights = (OPEN_CLIP_WEIGHTS if (folder / OPEN_CLIP_CONFIG).is_file() else
                   HF_WEIGHTS if (folder / HF_CONFIG).is_file() else ())
        for filename in weights:
            folder = Path(huggingface_hub.snapshot_download(allow_patterns=[filename],
                                                            **options))
            if (folder / filename).is_file():
                return folder / filename
    except (OSError, ConnectionError, huggingface_hub.errors.EntryNotFoundError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointNotFoundError(
            f'hf-hub:{repo_id} is not in the Hugging Face cache and could not be downloaded '
            f'from {url} ({reason}). Without network, download that repository on another '
            f'machine (its {OPEN_CLIP_CONFIG} or {HF_CONFIG} and weights) and pass the '
            f'folder as clip_path (or copy that machine\'s hub cache into $HF_HUB_CACHE).'
        ) from err
    raise CheckpointNotFoundError(
        f'{url} holds no CLIP checkpoint that sfp.clip reads: expected {OPEN_CLIP_CONFIG} '
        f'with {" or ".join(OPEN_CLIP_WEIGHTS)} (open_clip), or {HF_CONFIG} with '
        f'{" or ".join(HF_WEIGHTS)} (Hugging Face transformers)')


def build_model(state_dict: Dict[str, torch.Tensor], source: Optional[str] = None,
                config: Optional[CLIPConfig] = None) -> CLIP:
    """A CLIP with the weights of an OpenAI-named state dict; ``config`` defaults to the
    one its shapes give (with OpenAI's activation, heads and eps)."""
    # Built in float32, or in the weights' precision where it is higher (float64
    # checkpoints must not pass through float32 on their way in).
    dtype = functools.reduce(torch.promote_types, (
        v.dtype for v in state_dict.values() if v.is_floating_point()), torch.float32)
    model = CLIP(config or infer_config(state_dict, source)).to(dtype)
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
         download_root: Optional[Union[str, Path]] = None, progress: bool = True,
         activation: Optional[str] = None) -> CLIP:
    """Load a CLIP ViT in eval mode, frozen, on ``device`` in ``precision``.

    Args:
        name_or_path: one of :func:`available_models`, ``hf-hub:<org>/<repo>``, a
            checkpoint file, or a Hugging Face transformers / open_clip folder.
        device: where the weights go.
        precision: 'fp32', 'fp16', 'bf16' or 'fp64'.
        download_root: cache folder for downloads (default :func:`cache_dir` for OpenAI
            names, huggingface_hub's cache for hf-hub names).
        progress: show a progress bar while downloading.
        activation: MLP activation of a bare state dict, which cannot tell it:
            'quick_gelu' (default, OpenAI's), 'gelu' (e.g. open_clip's LAION and DataComp
            weights) or 'gelu_tanh'.  Folders carry it in their config; a different
            value is an error there.
    """
    dtype = precision_dtype(precision)
    path = resolve_checkpoint(name_or_path, download_root, progress)
    state_dict, config = read_checkpoint(path, activation)
    model = build_model(state_dict, str(path), config)
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
