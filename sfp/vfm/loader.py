"""Find, download and read vision foundation model (VFM) checkpoints; build their towers.

``load_vfm('dino_vitb8')`` downloads DINO's published ViT-B/8 once into the cache that
CLIP's downloads use (``$SFP_CACHE``, default ``~/.cache/clip``; same progress bar,
atomic write and offline message: :func:`sfp.weights.cached_download`).  DINO
publishes no sha256 for its files, so the digest of the first download (or of a file
placed there by hand) is recorded beside it, ``<file>.sha256``, and every later use is
verified against that record.  ``load_vfm('/path/x.pth')`` reads a local file.  The tower
class comes from the checkpoint's key names (the classes of
:data:`sfp.registry.VFM_TOWERS`: DINO's ViT, DINOv2's, SAM's image encoder), its shape from
the weights; the same names work with DINOv2 (``'dinov2_vitb14_reg'``) and SAM
(``'sam_vit_b'``, whose whole state dict :func:`sfp.vfm.load_sam_state_dict` reads).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..benchmarks import did_you_mean
from ..clip.loader import available_models
from ..registry import VFM_TOWERS
from ..weights import (
    CheckpointError,
    CheckpointNotFoundError,
    UnknownModelError,
    cache_dir,
    cached_download,
    looks_like_path,
    precision_dtype,
    read_state_dict,
    wrong_family_error,
)
from .interface import PublishedVFM

StateDict = Dict[str, torch.Tensor]
_VFM_FILE_EXAMPLE = ("a VFM's released weights such as DINO's dino_vitbase8_pretrain.pth or "
                     "SAM's sam_vit_b_01ec64.pth")


def _published() -> Dict[str, Tuple[type, PublishedVFM]]:
    """Model name -> (tower class, published weights), over every registered tower."""
    return {name: (tower, weights) for tower in VFM_TOWERS.module_dict.values()
            for name, weights in tower.published.items()}


def available_vfms() -> List[str]:
    """VFM names that :func:`load_vfm` downloads ('dino_vitb8', ...)."""
    return list(_published())


def vfm_url(name: str) -> str:
    return _published()[name][1].url


def describe_vfm_state_dict(state_dict: StateDict) -> Optional[str]:
    """What VFM a state dict is ('DINO ViT-B/8'), or None if no registered tower
    recognises its key names."""
    for tower in VFM_TOWERS.module_dict.values():
        if tower.recognises(state_dict):
            return tower.describe(state_dict)
    return None


def resolve_vfm_checkpoint(name_or_path: Union[str, Path],
                           download_root: Optional[Union[str, Path]] = None,
                           progress: bool = True, argument: str = 'vfm_path') -> Path:
    """Path of a VFM's weights file: a name of :func:`available_vfms` (downloaded into
    the cache if needed) or a local file; ``argument`` names what the caller's user set,
    for messages."""
    name = str(name_or_path)
    published = _published()
    if name in published:
        weights = published[name][1]
        root = Path(download_root).expanduser() if download_root else cache_dir()
        return cached_download(name, weights.url, root / weights.filename, weights.sha256,
                               progress, argument=argument)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise CheckpointNotFoundError(
            f'{path} is a folder; {argument} takes one weights file ({_VFM_FILE_EXAMPLE}) or a '
            f'name: {", ".join(published)}')
    if looks_like_path(name):
        raise CheckpointNotFoundError(
            f'no VFM checkpoint at {path.resolve()}. Pass an existing file '
            f'({_VFM_FILE_EXAMPLE}) or one of {", ".join(published)} to download it into '
            f'{cache_dir()}.')
    if name in available_models():
        raise UnknownModelError(
            f'{name!r} is a CLIP model name, not a vision foundation model: give it as '
            f'clip_path, and as {argument} one of {", ".join(published)} or a VFM file')
    raise UnknownModelError(
        f'unknown VFM {name!r}{did_you_mean(name, list(published))}; known: '
        f'{", ".join(published)}. To use a local checkpoint instead, pass its path (there '
        f'is no file at {path.resolve()}).')


def build_vfm(state_dict: StateDict, source: str = 'the state dict') -> nn.Module:
    """The tower whose key names the state dict has, with its weights (in float32, or the
    weights' precision where it is higher)."""
    for tower in VFM_TOWERS.module_dict.values():
        if tower.recognises(state_dict):
            try:
                model = tower.from_state_dict(state_dict)
            except (RuntimeError, ValueError, KeyError) as err:
                reason = str(err).replace('\n', ' ').replace('\t', '')
                raise CheckpointError(f'{source} looks like a {tower.describe(state_dict)} '
                                      f'checkpoint but does not fit one: {reason}') from None
            dtype = functools.reduce(torch.promote_types, (
                v.dtype for v in state_dict.values() if v.is_floating_point()), torch.float32)
            return model.to(dtype)
    raise wrong_family_error(
        source, state_dict, 'a vision foundation model',
        f'give a CLIP as clip_path, and as vfm_path a VFM ({", ".join(available_vfms())} or '
        f'{_VFM_FILE_EXAMPLE})')


def read_vfm_state_dict(name_or_path: Union[str, Path], tower: type,
                        download_root: Optional[Union[str, Path]] = None,
                        progress: bool = True, argument: str = 'vfm_path') -> StateDict:
    """The state dict of a checkpoint of one VFM family (``tower``, a class of
    :data:`sfp.registry.VFM_TOWERS`), by name or file; a file of another family is a
    one-line error saying what it is."""
    path = resolve_vfm_checkpoint(name_or_path, download_root, progress, argument)
    state_dict = read_state_dict(path, example=_VFM_FILE_EXAMPLE)
    if not tower.recognises(state_dict):
        raise wrong_family_error(
            path, state_dict, f'a {tower.family} one',
            f'{argument} takes one of {", ".join(tower.published)} or a {tower.family} file')
    return state_dict


def load_vfm(name_or_path: Union[str, Path], device: Union[str, torch.device] = 'cpu',
             dtype: Union[str, torch.dtype] = torch.float32,
             download_root: Optional[Union[str, Path]] = None,
             progress: bool = True) -> nn.Module:
    """A VFM tower in eval mode, frozen, on ``device`` in ``dtype`` ('fp32', 'fp16',
    'bf16', 'fp64' or a torch dtype).

    Args:
        name_or_path: one of :func:`available_vfms` or a checkpoint file.
        device, dtype: where the weights go, and their precision.
        download_root: cache folder for downloads (default :func:`sfp.clip.cache_dir`).
        progress: show a progress bar while downloading.
    """
    dtype = precision_dtype(dtype)
    path = resolve_vfm_checkpoint(name_or_path, download_root, progress)
    model = build_vfm(read_state_dict(path, example=_VFM_FILE_EXAMPLE), str(path))
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def random_vfm(name: str = 'dino_vitb8', seed: int = 0) -> nn.Module:
    """A tower of a published VFM's architecture with random weights (normal with 1/sqrt
    fan-in, zero biases, unit norms), for measuring speed and memory without the
    weights."""
    published = _published()
    if name not in published:
        raise UnknownModelError(f'unknown VFM {name!r}{did_you_mean(name, list(published))}; '
                                f'known: {", ".join(published)}')
    tower, weights = published[name]
    model = tower(**weights.architecture)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if 'norm' in key:
                param.fill_(1.0 if key.endswith('weight') else 0.0)
            elif key.endswith('bias'):
                param.zero_()
            elif key.endswith(('token', 'pos_embed')):
                param.normal_(0, 0.02, generator=generator)
            else:  # weights: 1 / sqrt(fan-in)
                param.normal_(0, param[0].numel() ** -0.5, generator=generator)
    return model.eval().requires_grad_(False)
