"""The visual-tower contract between a CLIP backbone and SFP's method code.

``sfp.models`` (encoder, enhancer, integrator, segmentor) touches an image tower only
through the names below, so any backbone whose tower honours them needs no change to
the method.  Every checkpoint format :func:`sfp.clip.load` reads (OpenAI, Hugging Face
transformers, open_clip) is converted into :class:`sfp.clip.model.VisionTransformer`,
which honours them; what differs between backbones (activation, heads, LayerNorm eps)
lives in :class:`sfp.clip.model.CLIPConfig`, never in the method.

Shapes: B images, C = ``width`` channels, N = rows * cols patches (row-major), L = 1 + N
tokens with CLS first, h = ``num_heads``, d = ``head_dim`` (h * d = C).

:func:`check_visual_tower` tests a tower against the contract (names and shapes).
"""
from __future__ import annotations

from typing import Protocol, Sequence, Tuple

import torch
from torch import nn


class Attention(Protocol):
    """Multi-head self-attention of one block.

    ``forward(x)`` must equal ``merge_heads(softmax(q k^T / sqrt(d)) v)`` with
    ``q, k, v = project_qkv(x)``: SFP rebuilds the attention from these pieces.
    """

    num_heads: int
    head_dim: int
    out_proj: nn.Module  # (B, L, C) -> (B, L, C), applied by merge_heads

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, C) -> q, k, v, each (B, h, L, d); q not yet scaled."""

    def project_v(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> v (B, h, L, d), equal to ``project_qkv(x)[2]``."""

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, L, d) -> out_proj(heads concatenated) (B, L, C)."""


class Block(Protocol):
    """A pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    ln_1: nn.Module
    attn: Attention
    ln_2: nn.Module
    mlp: nn.Module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, C)."""

    def forward_with_weights(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The block's output (B, L, C) and its attention weights (B, h, L, L)."""


class VisualTower(Protocol):
    """A ViT image tower as SFP runs it, block by block.

    Attributes:
        blocks: the transformer blocks in order (``blocks[i]`` is block i + 1).
        num_blocks: ``len(blocks)``.
        patch_size: pixels per patch side.
        width: token channels C.
        heads: attention heads per block.
        input_resolution: the square input side the tower was trained at.
    """

    blocks: Sequence[Block]
    num_blocks: int
    patch_size: int
    width: int
    heads: int
    input_resolution: int

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        """Patch grid (rows, cols) of an input of this size."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), CLIP-normalised -> tokens (B, 1 + N, C) after ln_pre, the
        positional embedding resized to the grid with
        :func:`sfp.clip.model.resize_patch_pos_embed` (the DINO bicubic recipe)."""

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """ln_post and the joint-space projection: (..., C) -> (..., D)."""

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Plain CLIP's patch features (B, N, D): ``project`` of the last block's patch
        tokens."""


def protocol_members(protocol: type) -> list:
    """The attributes and methods a protocol names."""
    methods = [name for name, value in vars(protocol).items()
               if callable(value) and (not name.startswith('_') or name == '__call__')]
    return list(protocol.__annotations__) + methods


def check_visual_tower(visual: nn.Module, image_size: Tuple[int, int] = (32, 48)) -> None:
    """Raise TypeError if ``visual`` lacks a name of :class:`VisualTower` (or of its
    blocks and attentions), ValueError if a method returns the wrong shape."""
    for thing, protocol in [(visual, VisualTower)] + [
            (part, proto) for block in getattr(visual, 'blocks', [])
            for part, proto in ((block, Block), (getattr(block, 'attn', None), Attention))]:
        missing = [name for name in protocol_members(protocol) if not hasattr(thing, name)]
        if missing:
            raise TypeError(f'{type(thing).__name__} does not honour {protocol.__name__}: '
                            f'no {", ".join(missing)}')
    param = next(visual.parameters())
    images = torch.zeros(2, 3, *image_size, dtype=param.dtype, device=param.device)
    rows, cols = visual.grid_size(*image_size)
    tokens = visual.embed(images)
    block = visual.blocks[0]
    q, k, v = block.attn.project_qkv(tokens)
    heads = (2, visual.heads, 1 + rows * cols, block.attn.head_dim)
    got = dict(embed=tuple(tokens.shape), q=tuple(q.shape), v=tuple(block.attn.project_v(
        tokens).shape), merge_heads=tuple(block.attn.merge_heads(v).shape),
        block=tuple(block(tokens).shape))
    want = dict(embed=(2, 1 + rows * cols, visual.width), q=heads, v=heads,
                merge_heads=(2, 1 + rows * cols, visual.width),
                block=(2, 1 + rows * cols, visual.width))
    wrong = {name: (got[name], want[name]) for name in want if got[name] != want[name]}
    if wrong:
        raise ValueError(f'{type(visual).__name__}: wrong shapes (got, expected): {wrong}')
