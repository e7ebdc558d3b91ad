"""SAM's image encoder (Kirillov et al., ICCV 2023) as plain PyTorch modules.

Written from segment_anything's ``ImageEncoderViT`` (facebookresearch/segment-anything@
dca509f), which it reproduces in float64 to ~1e-15: a ViT on a fixed 1024 x 1024 input (a
64 x 64 grid of 16-pixel patches) with an absolute positional embedding, windowed attention
(14 x 14 windows, the grid zero-padded to whole windows after ``norm1``) in most blocks and
global attention in a few, decomposed relative positions in every block, and a
convolutional neck to 256 channels.  The ``segment-anything`` package would need
torchvision, so it is not used.

Parameter names are the released checkpoints' ``image_encoder.`` keys without that prefix.
The architecture is read from the keys: width and patch from the patch embedding, the grid
(hence the input size) from ``pos_embed``, heads from the head size of the ``rel_pos``
tables, and each block's attention span from their length (2S - 1 for S x S windows; S = the
grid in global blocks).  The prompt encoder and mask decoder are not built here; their
weights come with :func:`load_sam_state_dict`.

A SAM file is always required: unlike ProxyCLIP's release (whose default leaves SAM
randomly initialised without a word), a missing file is an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import LayerNorm
from ..registry import VFM_TOWERS, WEIGHT_FAMILIES
from .dino import IMAGENET_MEAN, IMAGENET_STD, PatchEmbed
from .interface import PublishedVFM

StateDict = Dict[str, torch.Tensor]

#: The key prefix of the image encoder's weights in a whole SAM checkpoint.
IMAGE_ENCODER_PREFIX = 'image_encoder.'
#: The other parts of a released SAM checkpoint (read by :mod:`sfp.vfm.sam_decoder`).
SAM_PARTS = ('image_encoder', 'prompt_encoder', 'mask_decoder')

_SAM_URL = 'https://dl.fbaipublicfiles.com/segment_anything'


def _sam(width: int, depth: int, heads: int, global_blocks: Tuple[int, ...]) -> dict:
    return dict(width=width, depth=depth, heads=heads, global_blocks=global_blocks)


#: SAM's released models (segment_anything's ``sam_model_registry``).  Meta publishes no
#: sha256 for them: the loader records each file's on first download.
SAM_MODELS = {
    'sam_vit_b': PublishedVFM(f'{_SAM_URL}/sam_vit_b_01ec64.pth',
                              _sam(768, 12, 12, (2, 5, 8, 11))),
    'sam_vit_l': PublishedVFM(f'{_SAM_URL}/sam_vit_l_0b3195.pth',
                              _sam(1024, 24, 16, (5, 11, 17, 23))),
    'sam_vit_h': PublishedVFM(f'{_SAM_URL}/sam_vit_h_4b8939.pth',
                              _sam(1280, 32, 16, (7, 15, 23, 31))),
}
_SIZES = {768: 'B', 1024: 'L', 1280: 'H'}
_SAM_KEYS = ('image_encoder.patch_embed.proj.weight', 'image_encoder.pos_embed',
             'image_encoder.blocks.0.attn.rel_pos_h', 'image_encoder.neck.0.weight')


def is_sam_state_dict(state_dict: StateDict) -> bool:
    """Whether a state dict has the key names of a released SAM (its image encoder's)."""
    return all(k in state_dict for k in _SAM_KEYS)


def describe_sam(state_dict: StateDict) -> str:
    """'SAM ViT-B' (or the width of an unreleased size) of a SAM state dict."""
    width = state_dict['image_encoder.patch_embed.proj.weight'].shape[0]
    size = _SIZES.get(width)
    return f'SAM ViT-{size}' if size else f'SAM ViT (width {width})'


def relative_positions(table: torch.Tensor, size: int) -> torch.Tensor:
    """(2S - 1, d) table -> (S, S, d): entry [i, j] = table[i - j + S - 1]."""
    index = torch.arange(size)[:, None] - torch.arange(size)[None, :] + size - 1
    return table[index.to(table.device)]


class SAMAttention(nn.Module):
    """Multi-head attention over an S x S grid with decomposed relative positions.

    Args:
        width: token channels C.
        heads: attention heads (head size C / heads).
        span: S, the side of the grid it attends over (the window, or the whole grid in a
            global block); the ``rel_pos_h`` / ``rel_pos_w`` tables have 2S - 1 rows.
    """

    def __init__(self, width: int, heads: int, span: int):
        super().__init__()
        if width % heads:
            raise ValueError(f'width {width} is not divisible by heads {heads}')
        self.num_heads = heads
        self.head_dim = width // heads
        self.span = span
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * span - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * span - 1, self.head_dim))

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S, S, C) -> q, k, v each (B, heads, S*S, head_dim), q not yet scaled."""
        b, rows, cols, _ = x.shape
        qkv = self.qkv(x).reshape(b, rows * cols, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def position_bias(self, q: torch.Tensor) -> torch.Tensor:
        """The relative-position term of the logits, from the unscaled q (B, heads, S*S, d):
        (B, heads, S*S, S*S), entry [(y, x), (y', x')] = q(y, x) . (Rh[y, y'] + Rw[x, x'])
        split as q . Rh[y, y'] + q . Rw[x, x']."""
        b, h, _, d = q.shape
        s = self.span
        grid_q = q.reshape(b, h, s, s, d)
        rel_h = torch.einsum('bhyxd,ykd->bhyxk', grid_q,
                             relative_positions(self.rel_pos_h, s).to(q.dtype))
        rel_w = torch.einsum('bhyxd,xkd->bhyxk', grid_q,
                             relative_positions(self.rel_pos_w, s).to(q.dtype))
        bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, h, S, S, S(y'), S(x'))
        return bias.reshape(b, h, s * s, s * s)

    def probabilities(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, S*S, S*S) after the softmax over keys."""
        logits = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
        return torch.softmax(logits + self.position_bias(q), dim=-1)

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[1:3] != (self.span, self.span):
            raise ValueError(f'this attention spans {self.span} x {self.span} tokens (its '
                             f'rel_pos tables), got a {tuple(x.shape[1:3])} grid')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, S, C) -> (B, S, S, C)."""
        self._check(x)
        q, k, v = self.project_qkv(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.position_bias(q))
        return self.proj(out.transpose(1, 2).reshape(x.shape))

    def forward_with_attention(self, x: torch.Tensor
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s output, with the attention weights (B, heads, S*S, S*S) and
        the values (B, heads, S*S, head_dim) it applied."""
        self._check(x)
        q, k, v = self.project_qkv(x)
        attention = self.probabilities(q, k)
        out = self.proj((attention @ v).transpose(1, 2).reshape(x.shape))
        return out, attention, v


class SAMMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(width, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as SAM's
        self.lin2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nh * nw, size, size, C): zero-padded at the bottom and right to
    whole windows, windows row by row per image."""
    b, rows, cols, c = x.shape
    x = F.pad(x, (0, 0, 0, -cols % size, 0, -rows % size))
    nh, nw = x.shape[1] // size, x.shape[2] // size
    x = x.view(b, nh, size, nw, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * nh * nw, size, size, c)


def window_unpartition(windows: torch.Tensor, size: int, rows: int, cols: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: (B * nh * nw, size, size, C) -> (B, rows,
    cols, C), the padding cut off."""
    nh, nw = -(-rows // size), -(-cols // size)
    c = windows.shape[-1]
    x = windows.view(-1, nh, nw, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, nh * size, nw * size, c)[:, :rows, :cols]


class SAMBlock(nn.Module):
    """Pre-norm block without LayerScale; a windowed block (``window`` > 0) attends inside
    ``window`` x ``window`` windows of the zero-padded grid, a global one over the grid.

    Args:
        width, heads, mlp_width: sizes.
        window: the window side (0: global attention over a ``grid`` x ``grid`` input).
        grid: the token grid's side (64 for SAM's 1024 input).
        eps: LayerNorm epsilon (1e-6).
    """

    def __init__(self, width: int, heads: int, mlp_width: int, window: int, grid: int,
                 eps: float = 1e-6):
        super().__init__()
        self.window = window
        self.norm1 = LayerNorm(width, eps=eps)
        self.attn = SAMAttention(width, heads, window or grid)
        self.norm2 = LayerNorm(width, eps=eps)
        self.mlp = SAMMlp(width, mlp_width)

    def _attend(self, x: torch.Tensor, attend) -> Tuple[torch.Tensor, tuple]:
        h = self.norm1(x)
        if not self.window:
            out = attend(h)
            return (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        rows, cols = h.shape[1:3]
        out = attend(window_partition(h, self.window))
        out, extra = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        return window_unpartition(out, self.window, rows, cols), extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x = x + self._attend(x, self.attn)[0]
        return x + self.mlp(self.norm2(x))

    def forward_with_attention(self, x: torch.Tensor
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s output, the attention weights and the values of every window
        (or of the grid), as :meth:`SAMAttention.forward_with_attention`."""
        out, (attention, v) = self._attend(x, self.attn.forward_with_attention)
        x = x + out
        return x + self.mlp(self.norm2(x)), attention, v


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map, at every position (SAM's)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.promote_types(x.dtype, torch.float32)
        y = x.to(compute)
        mean = y.mean(1, keepdim=True)
        var = (y - mean).pow(2).mean(1, keepdim=True)
        y = (y - mean) / torch.sqrt(var + self.eps)
        return (self.weight.to(compute)[:, None, None] * y
                + self.bias.to(compute)[:, None, None]).to(x.dtype)


@WEIGHT_FAMILIES.register_module()
@VFM_TOWERS.register_module()
class SAMImageEncoder(nn.Module):
    """SAM's ViT image encoder; parameter names are a released checkpoint's
    ``image_encoder.`` keys without the prefix.  For the VFM loader it offers
    :class:`sfp.vfm.interface.VFMFormat` (names in :data:`SAM_MODELS`); for methods,
    ``patch_tokens`` / ``grid_size`` / ``mean`` / ``std`` of
    :class:`~sfp.vfm.interface.VFMTower`, plus ``input_size`` (its blocks take (B, H, W, C)
    grids, not token sequences, so it is not a drop-in tower for methods that walk a
    VFM's blocks).

    Its input size is fixed (``input_size`` x ``input_size``, 1024: the positional
    embedding is not resized); how an image is brought to it is the caller's (SAM's own
    pipeline resizes the longest side and pads; ProxyCLIP stretches each crop).

    Args:
        width: token channels (768 for ViT-B).
        depth: number of blocks.
        heads: attention heads per block.
        global_blocks: indices of the blocks that attend over the whole grid.
        mlp_width: MLP hidden width (default 4 x width).
        window: the window side of the other blocks.
        patch_size: pixels per patch side.
        input_size: the square input side (grid = input_size / patch_size).
        out_channels: the neck's channels.
        eps: LayerNorm epsilon (1e-6).
    """

    family = 'SAM'
    num_prefix_tokens = 0
    # SAM's pixel_mean / pixel_std are ImageNet's, on 0..255.
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    published = SAM_MODELS

    def __init__(self, width: int = 768, depth: int = 12, heads: int = 12,
                 global_blocks: Sequence[int] = (2, 5, 8, 11), mlp_width: int = 0,
                 window: int = 14, patch_size: int = 16, input_size: int = 1024,
                 out_channels: int = 256, eps: float = 1e-6):
        super().__init__()
        self.patch_size = patch_size
        self.width = width
        self.num_heads = heads
        self.input_size = input_size
        grid = input_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, width))
        self.blocks = nn.ModuleList([
            SAMBlock(width, heads, mlp_width or 4 * width, 0 if i in global_blocks else window,
                     grid, eps) for i in range(depth)])
        self.neck = nn.Sequential(
            nn.Conv2d(width, out_channels, kernel_size=1, bias=False),
            LayerNorm2d(out_channels, eps),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_channels, eps))

    @classmethod
    def recognises(cls, state_dict: StateDict) -> bool:
        return is_sam_state_dict(state_dict)

    @classmethod
    def describe(cls, state_dict: StateDict) -> str:
        return describe_sam(state_dict)

    @classmethod
    def from_state_dict(cls, state_dict: StateDict) -> SAMImageEncoder:
        """The image encoder of a whole SAM state dict (``image_encoder.*`` keys; the
        other parts are ignored), its shape read from the keys, its weights loaded."""
        return build_sam_image_encoder(state_dict)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def global_blocks(self) -> Tuple[int, ...]:
        return tuple(i for i, block in enumerate(self.blocks) if not block.window)

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        return height // self.patch_size, width // self.patch_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, input_size, input_size) normalised -> (B, grid, grid, C) tokens with the
        positional embedding."""
        if tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"SAM's image encoder reads {self.input_size} x {self.input_size} "
                             f'images (its positional embedding is not resized), got '
                             f'{tuple(images.shape[-2:])}')
        x = self.patch_embed.proj(images.to(self.pos_embed.dtype)).permute(0, 2, 3, 1)
        return x + self.pos_embed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, input_size, input_size), normalised with SAM's pixel mean and std ->
        the neck's features (B, out_channels, grid, grid)."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))

    def forward_with_attention(self, images: torch.Tensor
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`'s features, with the last block's attention weights (B, heads,
        N, N) and its values (B, heads, N, head_dim), N = grid * grid row-major (for a
        windowed last block: per window, (B * windows, ...))."""
        x = self.embed(images)
        for block in self.blocks[:-1]:
            x = block(x)
        x, attention, v = self.blocks[-1].forward_with_attention(x)
        return self.neck(x.permute(0, 3, 1, 2)), attention, v

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, input_size, input_size) normalised -> the neck's features flattened
        row-major, (B, grid * grid, out_channels)."""
        return self(images).flatten(2).transpose(1, 2)


def sam_image_encoder_state_dict(state_dict: StateDict) -> StateDict:
    """The ``image_encoder.`` entries of a whole SAM state dict, without the prefix."""
    n = len(IMAGE_ENCODER_PREFIX)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(IMAGE_ENCODER_PREFIX)}


def build_sam_image_encoder(state_dict: StateDict) -> SAMImageEncoder:
    """SAM's image encoder shaped like, and loaded (strictly) with, the ``image_encoder.*``
    entries of a whole SAM state dict, in the weights' precision (at least float32)."""
    weights = sam_image_encoder_state_dict(state_dict)
    width, _, patch, _ = weights['patch_embed.proj.weight'].shape
    grid = weights['pos_embed'].shape[1]
    depth = 1 + max(int(k.split('.')[1]) for k in weights if k.startswith('blocks.'))
    spans = [(weights[f'blocks.{i}.attn.rel_pos_h'].shape[0] + 1) // 2 for i in range(depth)]
    head_dim = weights['blocks.0.attn.rel_pos_h'].shape[1]
    windows = {s for s in spans if s != grid}
    if len(windows) > 1:
        raise ValueError(f'blocks attend over windows of several sizes {sorted(windows)}')
    model = SAMImageEncoder(
        width=width, depth=depth, heads=width // head_dim,
        global_blocks=tuple(i for i, s in enumerate(spans) if s == grid),
        mlp_width=weights['blocks.0.mlp.lin1.weight'].shape[0],
        window=windows.pop() if windows else 0, patch_size=patch, input_size=grid * patch,
        out_channels=weights['neck.0.weight'].shape[0])
    model.load_state_dict(weights, strict=True)
    dtype = torch.promote_types(weights['pos_embed'].dtype, torch.float32)
    return model.to(dtype)


def load_sam_state_dict(name_or_path: Union[str, Path],
                        download_root: Optional[Union[str, Path]] = None,
                        progress: bool = True) -> StateDict:
    """The whole state dict (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``)
    of a SAM checkpoint: a name of :data:`SAM_MODELS` (downloaded once into the cache,
    its sha256 recorded then verified) or a file with the released key names.  Anything
    else (a missing file, a DINO or CLIP file) is a one-line error."""
    from .loader import read_vfm_state_dict

    return read_vfm_state_dict(name_or_path, SAMImageEncoder, download_root, progress,
                               argument='sam_path')
