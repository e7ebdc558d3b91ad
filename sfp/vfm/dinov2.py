"""DINOv2's ViT (Oquab et al., TMLR 2024; with registers: Darcet et al., ICLR 2024) as
plain PyTorch modules, exact to facebookresearch/dinov2@e1277af as torch hub builds
``dinov2_vit{s,b,l}14`` and their ``_reg`` variants.

DINO's ViT (:mod:`sfp.vfm.dino`) with three differences, all in the released keys or
implied by them: LayerScale after attention and MLP (``blocks.N.ls1.gamma``,
``ls2.gamma``); register tokens (``register_tokens``, ``_reg`` models) placed after CLS
**after** the positional embedding, so they get none; and the positional embedding resized
from its 37 x 37 grid to the input's with bicubic interpolation to an explicit size with
antialiasing (``_reg`` models; the others use DINO's ``(n + 0.1) / N`` scale factor
without antialiasing), computed in at least float32 whatever the tower's precision, as
the release does.  Heads are 64 channels wide in every released model.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import resize_patch_pos_embed
from ..registry import VFM_TOWERS, WEIGHT_FAMILIES
from .dino import DINO_KEYS, DINOV2_KEYS, VIT_SIZES, Block, DINOVisionTransformer
from .interface import PublishedVFM

_DINOV2_URL = 'https://dl.fbaipublicfiles.com/dinov2'
_ARCHS = {'s': dict(width=384, depth=12, heads=6, mlp_width=1536),
          'b': dict(width=768, depth=12, heads=12, mlp_width=3072),
          'l': dict(width=1024, depth=24, heads=16, mlp_width=4096)}


def _dinov2(size: str, registers: int) -> PublishedVFM:
    base = f'dinov2_vit{size}14'
    full = f'{base}_reg{registers}' if registers else base
    return PublishedVFM(f'{_DINOV2_URL}/{base}/{full}_pretrain.pth',
                        dict(_ARCHS[size], patch_size=14, input_resolution=518,
                             num_registers=registers))


#: DINOv2's released backbones with the standard MLP (the entries of its hubconf.py; the
#: ViT-g/14 models, with a SwiGLU MLP, are not implemented).  No sha256 is published:
#: the loader records each file's on first download.
DINOV2_MODELS = {f'dinov2_vit{size}14{suffix}': _dinov2(size, registers)
                 for suffix, registers in (('', 0), ('_reg', 4)) for size in _ARCHS}


class LayerScale(nn.Module):
    """Multiplies every channel by its learnt ``gamma``."""

    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class LayerScaleBlock(Block):
    """DINO's block with LayerScale: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, width: int, heads: int, mlp_width: int, eps: float = 1e-6):
        super().__init__(width, heads, mlp_width, eps)
        self.ls1 = LayerScale(width)
        self.ls2 = LayerScale(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resize_pos_embed_antialiased(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(1 + g*g, C) -> (1 + rows*cols, C): the CLS entry kept, the g x g grid resized to
    exactly (rows, cols) by antialiased bicubic interpolation (DINOv2 ``_reg`` models);
    unchanged at (g, g)."""
    g = math.isqrt(pos_embed.shape[0] - 1)
    if (rows, cols) == (g, g):
        return pos_embed
    grid = pos_embed[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(rows, cols), mode='bicubic', antialias=True,
                         align_corners=False)
    return torch.cat([pos_embed[:1], grid.flatten(2)[0].t()], dim=0)


@WEIGHT_FAMILIES.register_module()
@VFM_TOWERS.register_module()
class DINOv2VisionTransformer(DINOVisionTransformer):
    """DINOv2's ViT backbone; it honours :class:`sfp.vfm.interface.VFMTower` (prefix tokens:
    CLS, then the registers) and, for the loader, :class:`sfp.vfm.interface.VFMFormat`
    (names in :data:`DINOV2_MODELS`).

    Args:
        patch_size, width, depth, heads, mlp_width, input_resolution, eps: as
            :class:`~sfp.vfm.dino.DINOVisionTransformer` (DINOv2: patch 14, 518 px).
        num_registers: register tokens (4 in the ``_reg`` models, else 0).
        antialias: resize the positional embedding to an explicit size with antialiasing
            (None: where there are registers, as the hub's models do).
    """

    family = 'DINOv2'
    block_class = LayerScaleBlock
    published = DINOV2_MODELS

    def __init__(self, patch_size: int = 14, width: int = 768, depth: int = 12,
                 heads: int = 12, mlp_width: int = 3072, input_resolution: int = 518,
                 num_registers: int = 4, antialias: Optional[bool] = None,
                 eps: float = 1e-6):
        super().__init__(patch_size, width, depth, heads, mlp_width, input_resolution, eps)
        self.num_registers = num_registers
        self.num_prefix_tokens = 1 + num_registers
        self.antialias = num_registers > 0 if antialias is None else antialias
        self.register_tokens = (nn.Parameter(torch.zeros(1, num_registers, width))
                                if num_registers else None)
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # training only

    @classmethod
    def recognises(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return (all(k in state_dict for k in DINO_KEYS)
                and any(k in state_dict for k in DINOV2_KEYS))

    @classmethod
    def describe(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        width = state_dict['cls_token'].shape[-1]
        patch = state_dict['patch_embed.proj.weight'].shape[-1]
        registers = state_dict['register_tokens'].shape[1] if 'register_tokens' in \
            state_dict else 0
        size = VIT_SIZES.get(width)
        name = (f'DINOv2 ViT-{size}/{patch}' if size else
                f'DINOv2 ViT (width {width}, patch {patch})')
        return f'{name} with {registers} registers' if registers else name

    @classmethod
    def from_state_dict(cls, state_dict: Dict[str, torch.Tensor],
                        heads: int = 0) -> DINOv2VisionTransformer:
        """A tower shaped like a checkpoint with DINOv2's key names, its weights loaded
        (``heads``: by default 64-channel heads, as every released DINOv2)."""
        width = state_dict['cls_token'].shape[-1]
        depth = 1 + max(int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.'))
        side = math.isqrt(state_dict['pos_embed'].shape[1] - 1)
        patch_size = state_dict['patch_embed.proj.weight'].shape[-1]
        registers = state_dict['register_tokens'].shape[1] if 'register_tokens' in \
            state_dict else 0
        model = cls(patch_size=patch_size, width=width, depth=depth,
                    heads=heads or max(1, width // 64),
                    mlp_width=state_dict['blocks.0.mlp.fc1.weight'].shape[0],
                    input_resolution=side * patch_size, num_registers=registers)
        model.load_state_dict(state_dict, strict=True)
        return model

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalised -> (B, 1 + registers + rows*cols, C): CLS,
        registers, patches; CLS and patches with their positional embedding."""
        x = self.patch_embed.proj(images.to(self.cls_token.dtype))  # (B, C, rows, cols)
        rows, cols = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        # The release resizes in float32 whatever the model's precision.
        pos = self.pos_embed[0].to(torch.promote_types(self.pos_embed.dtype, torch.float32))
        resize = resize_pos_embed_antialiased if self.antialias else resize_patch_pos_embed
        x = torch.cat([cls, x], dim=1) + resize(pos, rows, cols).to(x.dtype)
        if self.register_tokens is None:
            return x
        registers = self.register_tokens.expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)
