"""CLIP (ViT image tower + causal text transformer) as plain PyTorch modules.

Parameter names follow OpenAI's checkpoints exactly (``visual.transformer.resblocks.0.attn
.in_proj_weight`` ...), so their state dicts load with ``strict=True``; Hugging Face and
open_clip checkpoints are converted to this layout (:mod:`sfp.clip.formats`).  What differs
between backbones (activation, heads, MLP width, LayerNorm eps, text pooling) is read from
:class:`CLIPConfig`, never fixed in the modules.  Tensors are kept
batch-first, (B, L, C), throughout.  Attention goes through
:func:`torch.nn.functional.scaled_dot_product_attention` unless a caller asks for the
weights, which only :meth:`MultiheadSelfAttention.forward_with_weights` materialises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in at least float32 (OpenAI's fp16 recipe), then cast back.

    Half-precision inputs are normalised in float32; float32 and float64 inputs are
    normalised in their own precision.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = torch.promote_types(x.dtype, torch.float32)
        return F.layer_norm(x.to(compute), self.normalized_shape, self.weight.to(compute),
                            self.bias.to(compute), self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """OpenAI's sigmoid approximation of GELU, x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# MLP activations by name.  OpenAI trained with QuickGELU; open_clip's and Hugging Face's
# other checkpoints mostly use the exact (erf) GELU; 'gelu_tanh' is GELU's tanh
# approximation (transformers' 'gelu_pytorch_tanh' and 'gelu_new').
ACTIVATIONS = {
    'quick_gelu': QuickGELU,
    'gelu': nn.GELU,
    'gelu_tanh': lambda: nn.GELU(approximate='tanh'),
}


def build_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {", ".join(ACTIVATIONS)}, got {name!r}')
    return ACTIVATIONS[name]()


class MultiheadSelfAttention(nn.Module):
    """Self-attention with OpenAI's parameter layout (packed ``in_proj``, ``out_proj``)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f'width {width} is not divisible by heads {heads}')
        self.num_heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, C) -> q, k, v each (B, heads, L, head_dim)."""
        b, n, _ = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def project_v(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> v (B, heads, L, head_dim), skipping the q and k projections."""
        b, n, c = x.shape
        v = F.linear(x, self.in_proj_weight[2 * c:], self.in_proj_bias[2 * c:])
        return v.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, heads, L, head_dim) -> out_proj(concat heads) (B, L, C)."""
        b, h, n, d = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(b, n, h * d))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = self.project_qkv(x)
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=causal))

    def forward_with_weights(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Output (B, L, C) and per-head attention weights (B, heads, L, L)."""
        q, k, v = self.project_qkv(x)
        weights = torch.softmax((q * self.head_dim ** -0.5) @ k.transpose(-2, -1), dim=-1)
        return self.merge_heads(weights @ v), weights


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_width: Optional[int] = None,
                 activation: str = 'quick_gelu', eps: float = 1e-5):
        super().__init__()
        mlp_width = mlp_width or 4 * width
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_1 = LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module('c_fc', nn.Linear(width, mlp_width))
        self.mlp.add_module('gelu', build_activation(activation))
        self.mlp.add_module('c_proj', nn.Linear(mlp_width, width))
        self.ln_2 = LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))

    def forward_with_weights(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Block output and its per-head attention weights (B, heads, L, L)."""
        attn_out, weights = self.attn.forward_with_weights(self.ln_1(x))
        x = x + attn_out
        return x + self.mlp(self.ln_2(x)), weights


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: Optional[int] = None,
                 activation: str = 'quick_gelu', eps: float = 1e-5):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_width, activation, eps)
             for _ in range(layers)])

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, causal=causal)
        return x


def resize_patch_pos_embed(pos_embed: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Resize a (1 + g*g, C) positional embedding to a rows x cols patch grid.

    The CLS entry is kept.  The patch part is resized bicubically with the DINO recipe
    the SFP release uses: ``scale_factor=((rows + 0.1) / g, (cols + 0.1) / g)``, so the
    output size is the floor and the 0.1 enters the sampling coordinates.
    """
    num_patches = pos_embed.shape[0] - 1
    g = math.isqrt(num_patches)
    if g * g != num_patches:
        raise ValueError(f'positional embedding of {num_patches} patches is not a square grid')
    if (rows, cols) == (g, g):
        return pos_embed
    grid = pos_embed[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / g, (cols + 0.1) / g),
                         mode='bicubic', align_corners=False)
    if grid.shape[-2:] != (rows, cols):
        raise RuntimeError(f'positional embedding resized to {tuple(grid.shape[-2:])}, '
                           f'expected {(rows, cols)}')
    return torch.cat([pos_embed[:1], grid.flatten(2)[0].t()], dim=0)


class VisionTransformer(nn.Module):
    """CLIP's ViT image tower; it honours :class:`sfp.clip.interface.VisualTower`."""

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, output_dim: int, mlp_width: Optional[int] = None,
                 activation: str = 'quick_gelu', eps: float = 1e-5):
        super().__init__()
        self.input_resolution = input_resolution
        self.patch_size = patch_size
        self.width = width
        self.heads = heads
        self.output_dim = output_dim
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width, eps=eps)
        self.transformer = Transformer(width, layers, heads, mlp_width, activation, eps)
        self.ln_post = LayerNorm(width, eps=eps)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    @property
    def num_blocks(self) -> int:
        return len(self.transformer.resblocks)

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        """Patch grid (rows, cols) of an input of this size."""
        return height // self.patch_size, width // self.patch_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> ln_pre(tokens) (B, 1 + rows*cols, C), CLS first.

        Patches are laid out row-major; the positional embedding is resized to the grid.
        """
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (B, C, rows, cols)
        rows, cols = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, rows*cols, C)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = resize_patch_pos_embed(self.positional_embedding, rows, cols)
        return self.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """ln_post then the joint-space projection: (..., C) -> (..., output_dim)."""
        return self.ln_post(tokens) @ self.proj

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding (B, output_dim) from the CLS token."""
        x = self.transformer(self.embed(images))
        return self.project(x[:, 0])

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Plain CLIP's patch features (B, rows*cols, output_dim): the last block's patch
        tokens (CLS dropped) through ln_post and the projection, row-major."""
        x = self.transformer(self.embed(images))
        return self.project(x[:, 1:])


@dataclass(frozen=True)
class CLIPConfig:
    """Architecture of a CLIP ViT model.

    :func:`infer_config` reads the sizes from an OpenAI-named state dict; the fields after
    ``transformer_layers`` default to OpenAI's choices and come from a checkpoint's own
    configuration where it has one (:mod:`sfp.clip.formats`).

    Attributes (beyond the sizes):
        vision_head_width: channels per attention head of the image tower.
        vision_mlp_width, text_mlp_width: hidden width of the MLPs (None: 4 x width).
        vision_activation, text_activation: MLP activation, a key of :data:`ACTIVATIONS`.
        vision_eps, text_eps: LayerNorm epsilon of each tower.
        text_eos_id: the text embedding is read at the first token with this id; None
            reads it at the largest id (OpenAI's rule: end-of-text is the largest id).
    """

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int
    vision_head_width: int = 64
    vision_mlp_width: Optional[int] = None
    text_mlp_width: Optional[int] = None
    vision_activation: str = 'quick_gelu'
    text_activation: str = 'quick_gelu'
    vision_eps: float = 1e-5
    text_eps: float = 1e-5
    text_eos_id: Optional[int] = None

    def __post_init__(self):
        for field in ('vision_activation', 'text_activation'):
            if getattr(self, field) not in ACTIVATIONS:
                raise ValueError(f'{field} must be one of {", ".join(ACTIVATIONS)}, got '
                                 f'{getattr(self, field)!r}')
        if self.vision_width % self.vision_head_width:
            raise ValueError(f'vision_width {self.vision_width} is not a multiple of '
                             f'vision_head_width {self.vision_head_width}')

    @property
    def vision_heads(self) -> int:
        return self.vision_width // self.vision_head_width


class CLIP(nn.Module):
    """CLIP with a ViT image tower.  The text tower's parameters sit at the top level
    (``token_embedding``, ``transformer``, ...) as in OpenAI's checkpoints."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(
            input_resolution=config.image_resolution,
            patch_size=config.vision_patch_size,
            width=config.vision_width,
            layers=config.vision_layers,
            heads=config.vision_heads,
            output_dim=config.embed_dim,
            mlp_width=config.vision_mlp_width,
            activation=config.vision_activation,
            eps=config.vision_eps)
        self.context_length = config.context_length
        self.token_embedding = nn.Embedding(config.vocab_size, config.transformer_width)
        self.positional_embedding = nn.Parameter(
            torch.empty(config.context_length, config.transformer_width))
        self.transformer = Transformer(config.transformer_width, config.transformer_layers,
                                       config.transformer_heads, config.text_mlp_width,
                                       config.text_activation, config.text_eps)
        self.ln_final = LayerNorm(config.transformer_width, eps=config.text_eps)
        self.text_projection = nn.Parameter(
            torch.empty(config.transformer_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), CLIP-normalised -> image embeddings (B, embed_dim)."""
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, context_length) -> text embeddings (B, embed_dim)."""
        x = self.token_embedding(tokens).to(self.dtype)
        x = x + self.positional_embedding[:tokens.shape[1]].to(x.dtype)
        x = self.ln_final(self.transformer(x, causal=True))
        eos_id = self.config.text_eos_id
        # OpenAI: the end-of-text token has the largest id in CLIP's vocabulary.
        eot_index = (tokens.argmax(dim=-1) if eos_id is None
                     else (tokens == eos_id).int().argmax(dim=-1))
        eot = x[torch.arange(x.shape[0], device=x.device), eot_index]
        return eot @ self.text_projection

    def forward(self, images: torch.Tensor,
                tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine logits (images x texts, texts x images)."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(tokens), dim=-1)
        logits = self.logit_scale.exp() * image_features @ text_features.t()
        return logits, logits.t()


def infer_config(state_dict: dict, source: Optional[str] = None, **settings) -> CLIPConfig:
    """Read a ViT CLIP's architecture from the shapes of its OpenAI-named weights.

    ``settings`` are :class:`CLIPConfig` fields that shapes cannot tell (activations,
    ``vision_head_width``, ``transformer_heads``, eps, ``text_eos_id``); unset ones take
    OpenAI's values (QuickGELU, 64-wide heads, eps 1e-5, end-of-text at the largest id).
    """
    from .errors import CheckpointError
    from .formats import ACCEPTED_FORMATS

    where = f' in {source}' if source else ''
    if 'visual.layer1.0.conv1.weight' in state_dict:
        raise CheckpointError(
            f'the checkpoint{where} is a ResNet CLIP; SFP works on the patch tokens of a '
            f'ViT CLIP (ViT-B/16, ViT-B/32, ViT-L/14 ...)')
    required = ['visual.conv1.weight', 'visual.positional_embedding', 'visual.proj',
                'visual.class_embedding', 'text_projection', 'positional_embedding',
                'token_embedding.weight', 'ln_final.weight']
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise CheckpointError(
            f'the checkpoint{where} is in no CLIP format sfp reads: as an OpenAI CLIP ViT '
            f'state dict it lacks {", ".join(missing)} (it has {len(state_dict)} keys, e.g. '
            f'{", ".join(list(state_dict)[:3])}). Accepted: {ACCEPTED_FORMATS}')
    conv = state_dict['visual.conv1.weight']
    grid = math.isqrt(state_dict['visual.positional_embedding'].shape[0] - 1)

    def count_blocks(prefix: str) -> int:
        return len({k.split('.')[len(prefix.split('.')) - 1] for k in state_dict
                    if k.startswith(prefix)})

    def mlp_width(prefix: str, width: int) -> Optional[int]:
        """Hidden width of the first block's MLP; None where it is the usual 4 x width."""
        weight = state_dict.get(f'{prefix}resblocks.0.mlp.c_fc.weight')
        return None if weight is None or weight.shape[0] == 4 * width else weight.shape[0]

    text_width = state_dict['ln_final.weight'].shape[0]
    settings.setdefault('transformer_heads', max(text_width // 64, 1))
    settings.setdefault('vision_mlp_width', mlp_width('visual.transformer.', conv.shape[0]))
    settings.setdefault('text_mlp_width', mlp_width('transformer.', text_width))
    return CLIPConfig(
        embed_dim=state_dict['text_projection'].shape[1],
        image_resolution=conv.shape[-1] * grid,
        vision_layers=count_blocks('visual.transformer.resblocks.'),
        vision_width=conv.shape[0],
        vision_patch_size=conv.shape[-1],
        context_length=state_dict['positional_embedding'].shape[0],
        vocab_size=state_dict['token_embedding.weight'].shape[0],
        transformer_width=text_width,
        transformer_layers=count_blocks('transformer.resblocks.'),
        **settings)
