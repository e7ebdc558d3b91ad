"""The contract between a vision foundation model (VFM) tower and the methods that read it.

ProxyCLIP and CASS run a second vision model (DINO, later DINOv2 or SAM's image encoder)
beside CLIP on the same crops.  They touch it only through the names below, so a new VFM
is one file whose tower honours them.

Shapes: B images, C = ``width`` channels, N = rows * cols patches (row-major), P =
``num_prefix_tokens`` tokens before the patches (CLS, then registers where a model has
them), L = P + N, h = ``num_heads``, d = ``head_dim`` (h * d = C).

:func:`check_vfm_tower` tests a tower against the contract (names and shapes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Protocol, Sequence, Tuple

import torch
from torch import nn

from ..clip.interface import protocol_members


@dataclass(frozen=True)
class PublishedVFM:
    """Weights a VFM's authors publish: where, and the architecture they fill.

    Attributes:
        url: the file's address (downloaded once into the cache).
        architecture: the tower's constructor arguments for these weights (a random
            tower of the same shape, for speed measurements, is built from them).
        sha256: the file's digest where the authors publish one; None: recorded on first
            download and verified on later uses (see :func:`sfp.weights.cached_download`).
    """

    url: str
    architecture: Dict[str, int] = field(default_factory=dict)
    sha256: Optional[str] = None

    @property
    def filename(self) -> str:
        return self.url.rsplit('/', 1)[-1]


class VFMAttention(Protocol):
    """Multi-head self-attention of one block, as pieces a method can recombine."""

    num_heads: int
    head_dim: int

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, C) -> q, k, v, each (B, h, L, d); q not yet scaled."""


class VFMBlock(Protocol):
    """A pre-norm transformer block; ``norm1`` is what its attention reads."""

    norm1: nn.Module
    attn: VFMAttention

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, C)."""


class VFMTower(Protocol):
    """A ViT-style VFM as the methods run it.

    Attributes:
        blocks: the transformer blocks in order.
        num_blocks: ``len(blocks)``.
        patch_size: pixels per patch side.
        width: token channels C.
        num_heads: attention heads per block.
        num_prefix_tokens: tokens before the patches (1: CLS; DINOv2 with registers: 5).
        mean, std: the per-channel normalisation of the model's own pipeline, on 0..1 RGB.
    """

    blocks: Sequence[VFMBlock]
    num_blocks: int
    patch_size: int
    width: int
    num_heads: int
    num_prefix_tokens: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        """Patch grid (rows, cols) of an input of this size."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), normalised the model's way -> tokens (B, L, C) entering the
        first block, the positional embedding resized to the grid as the model does."""

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The norm after the last block: (..., C) -> (..., C)."""

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's output after ``final_norm``, prefix tokens dropped: (B, N, C)."""


class VFMFormat(Protocol):
    """What a tower class offers the loader (:mod:`sfp.vfm.loader`), as class attributes
    and classmethods; a class registered in :data:`sfp.registry.VFM_TOWERS` with these
    is loadable by name and by file.

    Attributes:
        published: model name -> its published weights (``'dino_vitb8'`` ...).
    """

    published: Dict[str, PublishedVFM]

    @classmethod
    def recognises(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        """Whether a state dict has this family's key names."""

    @classmethod
    def describe(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        """What a recognised state dict is, for messages ('DINO ViT-B/8')."""

    @classmethod
    def from_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> VFMTower:
        """A tower shaped like the state dict, its weights loaded."""


def check_vfm_tower(tower: nn.Module, image_size: Tuple[int, int] = (40, 56)) -> None:
    """Raise TypeError if ``tower`` lacks a name of :class:`VFMTower` (or of its blocks
    and attentions), ValueError if a method returns the wrong shape."""
    parts = [(tower, VFMTower)] + [
        (part, proto) for block in getattr(tower, 'blocks', [])
        for part, proto in ((block, VFMBlock), (getattr(block, 'attn', None), VFMAttention))]
    for thing, protocol in parts:
        missing = [name for name in protocol_members(protocol) if not hasattr(thing, name)]
        if missing:
            raise TypeError(f'{type(thing).__name__} does not honour {protocol.__name__}: '
                            f'no {", ".join(missing)}')
    param = next(tower.parameters())
    images = torch.zeros(2, 3, *image_size, dtype=param.dtype, device=param.device)
    rows, cols = tower.grid_size(*image_size)
    length = tower.num_prefix_tokens + rows * cols
    tokens = tower.embed(images)
    q, _, _ = tower.blocks[0].attn.project_qkv(tower.blocks[0].norm1(tokens))
    got = dict(embed=tuple(tokens.shape), q=tuple(q.shape),
               block=tuple(tower.blocks[0](tokens).shape),
               patch_tokens=tuple(tower.patch_tokens(images).shape))
    want = dict(embed=(2, length, tower.width),
                q=(2, tower.num_heads, length, tower.width // tower.num_heads),
                block=(2, length, tower.width), patch_tokens=(2, rows * cols, tower.width))
    wrong = {name: (got[name], want[name]) for name in want if got[name] != want[name]}
    if wrong:
        raise ValueError(f'{type(tower).__name__}: wrong shapes (got, expected): {wrong}')
