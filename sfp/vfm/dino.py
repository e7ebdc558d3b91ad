"""DINO's ViT (Caron et al., ICCV 2021) as plain PyTorch modules.

Parameter names follow DINO's released checkpoints (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.norm1.*``, ``blocks.N.attn.qkv.*`` ...), so those plain
state dicts load with ``strict=True``; the architecture (width, depth, heads, MLP width,
patch size, training resolution) is read from the keys.  The positional embedding is
resized with DINO's own recipe, which is the one CLIP's tower here uses too
(:func:`sfp.clip.model.resize_patch_pos_embed`: bicubic with the ``(n + 0.1) / N`` scale
factor).  timm also ships these ViTs, but resizes positional embeddings to an explicit
size, which samples other positions, so DINO's numbers would not reproduce.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import LayerNorm, resize_patch_pos_embed
from ..registry import VFM_TOWERS, WEIGHT_FAMILIES
from .interface import PublishedVFM

#: ImageNet's normalisation, DINO's own pipeline (on 0..1 RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_DINO_URL = 'https://dl.fbaipublicfiles.com/dino'
_VIT_S = dict(width=384, depth=12, heads=6, mlp_width=1536)
_VIT_B = dict(width=768, depth=12, heads=12, mlp_width=3072)
#: DINO's released backbones (the entries of facebookresearch/dino's hubconf.py).  The
#: authors publish no sha256 for them: the loader records each file's on first download.
DINO_MODELS = {
    'dino_vits16': PublishedVFM(f'{_DINO_URL}/dino_deitsmall16_pretrain/'
                                'dino_deitsmall16_pretrain.pth', dict(_VIT_S, patch_size=16)),
    'dino_vits8': PublishedVFM(f'{_DINO_URL}/dino_deitsmall8_pretrain/'
                               'dino_deitsmall8_pretrain.pth', dict(_VIT_S, patch_size=8)),
    'dino_vitb16': PublishedVFM(f'{_DINO_URL}/dino_vitbase16_pretrain/'
                                'dino_vitbase16_pretrain.pth', dict(_VIT_B, patch_size=16)),
    'dino_vitb8': PublishedVFM(f'{_DINO_URL}/dino_vitbase8_pretrain/'
                               'dino_vitbase8_pretrain.pth', dict(_VIT_B, patch_size=8)),
}
# Keys every DINO ViT checkpoint has; DINOv2's also have these, plus LayerScale and
# (``_reg`` models) registers: :mod:`sfp.vfm.dinov2`.
DINO_KEYS = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.attn.qkv.weight',
              'norm.weight')
DINOV2_KEYS = ('blocks.0.ls1.gamma', 'register_tokens', 'mask_token')
VIT_SIZES = {384: 'S', 768: 'B', 1024: 'L'}


class Attention(nn.Module):
    """DINO's attention: packed ``qkv`` (with bias), ``proj``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f'width {width} is not divisible by heads {heads}')
        self.num_heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, C) -> q, k, v each (B, heads, L, head_dim)."""
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project_qkv(x)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, head_dim)
        return self.proj(out.transpose(1, 2).flatten(2))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as DINO trained
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, width: int, heads: int, mlp_width: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)


@WEIGHT_FAMILIES.register_module()
@VFM_TOWERS.register_module()
class DINOVisionTransformer(nn.Module):
    """DINO's ViT backbone (no projection head); it honours
    :class:`sfp.vfm.interface.VFMTower` and, for the loader,
    :class:`sfp.vfm.interface.VFMFormat` (names in :data:`DINO_MODELS`).

    Args:
        patch_size: pixels per patch side (8 or 16 for the released models).
        width: token channels (384 for ViT-S, 768 for ViT-B).
        depth: number of blocks.
        heads: attention heads per block.
        mlp_width: hidden width of the MLPs (4 x width in the released models).
        input_resolution: the square side the positional embedding was trained at.
        eps: LayerNorm epsilon (1e-6).
    """

    family = 'DINO'
    block_class = Block
    num_prefix_tokens = 1
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    published = DINO_MODELS

    def __init__(self, patch_size: int = 16, width: int = 768, depth: int = 12,
                 heads: int = 12, mlp_width: int = 3072, input_resolution: int = 224,
                 eps: float = 1e-6):
        super().__init__()
        self.patch_size = patch_size
        self.width = width
        self.num_heads = heads
        self.input_resolution = input_resolution
        self.patch_embed = PatchEmbed(patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, (input_resolution // patch_size) ** 2 + 1, width))
        self.blocks = nn.ModuleList([self.block_class(width, heads, mlp_width, eps)
                                     for _ in range(depth)])
        self.norm = LayerNorm(width, eps=eps)

    @classmethod
    def recognises(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return (all(k in state_dict for k in DINO_KEYS)
                and not any(k in state_dict for k in DINOV2_KEYS))

    @classmethod
    def describe(cls, state_dict: Dict[str, torch.Tensor]) -> str:
        width = state_dict['cls_token'].shape[-1]
        patch = state_dict['patch_embed.proj.weight'].shape[-1]
        size = VIT_SIZES.get(width)
        return f'DINO ViT-{size}/{patch}' if size else f'DINO ViT (width {width}, patch {patch})'

    @classmethod
    def from_state_dict(cls, state_dict: Dict[str, torch.Tensor],
                        heads: int = 0) -> DINOVisionTransformer:
        """A tower shaped like a checkpoint with DINO's key names, its weights loaded.

        ``heads`` is not stored in the weights: by default 64-channel heads, as every
        released DINO ViT (ViT-S/8, S/16: 6 heads; ViT-B/8, B/16: 12)."""
        width = state_dict['cls_token'].shape[-1]
        depth = 1 + max(int(k.split('.')[1]) for k in state_dict if k.startswith('blocks.'))
        num_patches = state_dict['pos_embed'].shape[1] - 1
        side = math.isqrt(num_patches)
        patch_size = state_dict['patch_embed.proj.weight'].shape[-1]
        model = cls(patch_size=patch_size, width=width, depth=depth,
                    heads=heads or max(1, width // 64),
                    mlp_width=state_dict['blocks.0.mlp.fc1.weight'].shape[0],
                    input_resolution=side * patch_size)
        model.load_state_dict(state_dict, strict=True)
        return model

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        return height // self.patch_size, width // self.patch_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) ImageNet-normalised -> (B, 1 + rows*cols, C), CLS first."""
        x = self.patch_embed.proj(images.to(self.cls_token.dtype))  # (B, C, rows, cols)
        rows, cols = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        pos = resize_patch_pos_embed(self.pos_embed[0], rows, cols)
        return torch.cat([cls, x], dim=1) + pos

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens (B, 1 + N, C) after the last block and the final norm (DINO's
        ``get_intermediate_layers(x)[0]``)."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, C): :meth:`forward` without the CLS token."""
        return self(images)[:, self.num_prefix_tokens:]
