"""SAM's prompt encoder and mask decoder (Kirillov et al., ICCV 2023), exact to
segment_anything (facebookresearch/segment-anything@dca509f), with its released key names
(``prompt_encoder.*``, ``mask_decoder.*`` of ``sam_vit_b_01ec64.pth`` and its siblings).

The image encoder is :mod:`sfp.vfm.sam`; :class:`SAM` holds the three parts and
:func:`load_sam` reads a whole checkpoint into it.  The prompt encoder and mask decoder
turn prompts (points, boxes, a low-resolution mask) and an image embedding into mask logits
and a predicted IoU; Trident's refinement calls them.  Shapes: B prompts, C = ``embed_dim``
(256 in the released models), (h, w) = the image embedding's grid (64 x 64), masks at 4x
that (256 x 256).  Coordinates are pixels of SAM's 1024 x 1024 input frame, (x, y).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .sam import LayerNorm2d

StateDict = Dict[str, torch.Tensor]


class RandomFourierEncoding(nn.Module):
    """Positions in [0, 1]^2 -> (sin, cos) of 2 pi (2p - 1) G, G a fixed random (2, C/2)
    matrix (``positional_encoding_gaussian_matrix``)."""

    def __init__(self, half_dim: int):
        super().__init__()
        self.register_buffer('positional_encoding_gaussian_matrix', torch.randn(2, half_dim))

    def encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) (x, y) in [0, 1] -> (..., C)."""
        angles = 2 * math.pi * ((2 * unit_coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def grid(self, rows: int, cols: int) -> torch.Tensor:
        """The encoding of every cell centre of a (rows, cols) grid: (C, rows, cols)."""
        matrix = self.positional_encoding_gaussian_matrix
        y = (torch.arange(rows, dtype=matrix.dtype, device=matrix.device) + 0.5) / rows
        x = (torch.arange(cols, dtype=matrix.dtype, device=matrix.device) + 0.5) / cols
        coords = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)
        return self.encode(coords).permute(2, 0, 1)

    def pixels(self, coords: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) (x, y) pixel coordinates of an image of ``size`` (H, W) -> (..., C)."""
        scale = torch.tensor([size[1], size[0]], dtype=coords.dtype, device=coords.device)
        return self.encode(coords / scale)


class SAMPromptEncoder(nn.Module):
    """Sparse (points, box corners) and dense (mask) prompt embeddings.

    Args:
        embed_dim: C.
        embedding_size: the image embedding's grid (h, w).
        input_size: SAM's input frame (H, W) the coordinates live in.
        mask_in_chans: hidden channels of the mask's downscaling convolutions.
    """

    def __init__(self, embed_dim: int = 256, embedding_size: Tuple[int, int] = (64, 64),
                 input_size: Tuple[int, int] = (1024, 1024), mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = tuple(embedding_size)
        self.input_size = tuple(input_size)
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # Added to a point's encoding: 0 negative point, 1 positive, 2 / 3 box corners.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans), nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_positions(self) -> torch.Tensor:
        """The encoding of the image embedding's cells: (1, C, h, w)."""
        return self.pe_layer.grid(*self.embedding_size)[None]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, n, 2) points with (B, n) labels (1 positive, 0 negative, -1 none) -> (B, n', C);
        ``pad`` appends a "not a point" (done when no box is given)."""
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, coords.new_zeros(len(coords), 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(len(labels), 1)], dim=1)
        embedding = self.pe_layer.pixels(coords, self.input_size)
        labels = labels[..., None]
        embedding = torch.where(labels == -1, self.not_a_point_embed.weight, embedding)
        embedding = embedding + torch.where(labels == 0, self.point_embeddings[0].weight, 0)
        return embedding + torch.where(labels == 1, self.point_embeddings[1].weight, 0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) boxes (x1, y1, x2, y2) -> (B, 2, C), one embedding per corner."""
        corners = self.pe_layer.pixels((boxes + 0.5).reshape(-1, 2, 2), self.input_size)
        return corners + torch.cat([self.point_embeddings[2].weight,
                                    self.point_embeddings[3].weight])[None]

    def embed_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A mask prompt (B, 1, 4h, 4w) -> (B, C, h, w).  A (1, 4h, 4w) mask is taken as one
        unbatched image, as segment_anything's convolutions take it; its LayerNorm2d, which
        takes statistics over dim 1, then normalises over rows, not channels (Trident's
        prompts, reproduced); the result (C, h, w) broadcasts over the prompts."""
        return self.mask_downscaling(mask)

    def forward(self, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                boxes: Optional[torch.Tensor] = None,
                masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sparse embeddings (B, n, C) of the points then the box corners, and the dense
        embedding (B, C, h, w) of the mask (``no_mask_embed`` everywhere without one)."""
        count = (points[0].shape[0] if points is not None else
                 boxes.shape[0] if boxes is not None else
                 masks.shape[0] if masks is not None else 1)
        weight = self.no_mask_embed.weight
        sparse = [weight.new_zeros(count, 0, self.embed_dim)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.embed_mask(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(count, -1, *self.embedding_size)
        return torch.cat(sparse, dim=1), dense


class DecoderAttention(nn.Module):
    """Multi-head attention whose q, k, v are projected to ``dim // downsample`` channels."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f'{heads} heads do not divide {inner} channels')
        self.num_heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k = self._heads(self.q_proj(q)), self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = (weights @ v).transpose(1, 2)
        return self.out_proj(out.reshape(*out.shape[:2], -1))


class DecoderMLP(nn.Module):
    """``lin2(act(lin1 x))`` (the two-way transformer's MLP; ReLU there)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Tokens self-attend, attend to the image, go through the MLP; the image attends to
    the tokens.  Post-norm; the first block's self-attention has no positions and no
    residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, first: bool):
        super().__init__()
        self.first = first
        self.self_attn = DecoderAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DecoderMLP(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, heads, downsample)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor, token_pe: torch.Tensor,
                image_pe: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.first:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)
        keys = image + image_pe
        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, keys, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.cross_attn_image_to_token(keys, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """SAM's decoder transformer: ``depth`` two-way blocks, then the tokens attend to the
    image once more."""

    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int, downsample: int = 2):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, downsample, first=i == 0)
                                    for i in range(depth))
        self.final_attn_token_to_image = DecoderAttention(dim, heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) image, its positions, (B, n, C) tokens -> tokens, image (B, h*w, C)."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, image = layer(queries, image, tokens, image_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, image + image_pe,
                                                           image)
        return self.norm_final_attn(queries), image


class PredictionMLP(nn.Module):
    """``layers`` linear layers with ReLU between them."""

    def __init__(self, dim: int, hidden: int, out: int, depth: int):
        super().__init__()
        sizes = [dim] + [hidden] * (depth - 1) + [out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class SAMMaskDecoder(nn.Module):
    """Mask logits (B, m, 4h, 4w) and predicted IoU (B, m) from an image embedding and
    prompt embeddings.

    Args:
        dim: C.
        depth, heads, mlp_dim, downsample: the two-way transformer's.
        num_multimask_outputs: masks of the ambiguous output (the first mask token is the
            single-mask output).
        iou_head_depth, iou_head_hidden: the IoU head's MLP.
    """

    def __init__(self, dim: int = 256, depth: int = 2, heads: int = 8, mlp_dim: int = 2048,
                 downsample: int = 2, num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden: int = 256):
        super().__init__()
        self.num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth, dim, heads, mlp_dim, downsample)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(
            PredictionMLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = PredictionMLP(dim, iou_head_hidden, self.num_mask_tokens,
                                                 iou_head_depth)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                sparse: torch.Tensor, dense: torch.Tensor,
                multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """(1, C, h, w) image embedding and positions, (B, n, C) sparse and (B or 1, C, h, w)
        dense prompt embeddings -> mask logits (B, m, 4h, 4w), IoU (B, m): the first mask
        (m = 1), or the ``num_multimask_outputs`` others."""
        count = sparse.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens[None].expand(count, -1, -1), sparse], dim=1)
        image = image_embedding.expand(count, -1, -1, -1) + dense
        pe = image_pe.expand(count, -1, -1, -1)
        b, c, h, w = image.shape
        tokens, image = self.transformer(image, pe, tokens)
        mask_tokens = tokens[:, 1:1 + self.num_mask_tokens]
        upscaled = self.output_upscaling(image.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_tokens[:, i])
                             for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        masks = (hyper @ upscaled.flatten(2)).view(b, -1, *upscaled.shape[-2:])
        iou = self.iou_prediction_head(tokens[:, 0])
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]


class SAMPromptDecoder(nn.Module):
    """SAM's prompt encoder and mask decoder, as one module whose state dict has the
    released key names (``prompt_encoder.*``, ``mask_decoder.*``).

    Build it from a whole SAM checkpoint with :meth:`from_state_dict` (the image encoder's
    keys are ignored), or with the released ViT-B/L/H decoder's shape by default.
    """

    def __init__(self, prompt_encoder: Optional[SAMPromptEncoder] = None,
                 mask_decoder: Optional[SAMMaskDecoder] = None):
        super().__init__()
        self.prompt_encoder = prompt_encoder or SAMPromptEncoder()
        self.mask_decoder = mask_decoder or SAMMaskDecoder()

    @staticmethod
    def recognises(state_dict: StateDict) -> bool:
        return ('prompt_encoder.pe_layer.positional_encoding_gaussian_matrix' in state_dict
                and 'mask_decoder.iou_token.weight' in state_dict)

    @classmethod
    def from_state_dict(cls, state_dict: StateDict, image_size: int = 1024,
                        patch_size: int = 16, heads: int = 8) -> SAMPromptDecoder:
        """The parts shaped like a SAM checkpoint's ``prompt_encoder.*`` / ``mask_decoder.*``
        keys, their weights loaded (float32 as stored).  What the keys do not hold: the
        input frame ``image_size`` and the embedding grid ``image_size // patch_size``
        (SAM's image encoder; 1024 and 16 in every released model) and the decoder's
        ``heads`` (8 in every released model)."""
        if not cls.recognises(state_dict):
            raise ValueError('not a SAM checkpoint: no prompt_encoder / mask_decoder keys '
                             '(expected e.g. prompt_encoder.pe_layer.'
                             'positional_encoding_gaussian_matrix)')
        keys = {k: v for k, v in state_dict.items()
                if k.startswith(('prompt_encoder.', 'mask_decoder.'))}
        dim = keys['mask_decoder.iou_token.weight'].shape[1]
        grid = image_size // patch_size
        prompt = SAMPromptEncoder(
            dim, (grid, grid), (image_size, image_size),
            mask_in_chans=keys['prompt_encoder.mask_downscaling.3.weight'].shape[0])
        layer = 'mask_decoder.transformer.layers.'
        depth = len({k[len(layer):].split('.')[0] for k in keys if k.startswith(layer)})
        head = 'mask_decoder.iou_prediction_head.layers.'
        iou_depth = len({k[len(head):].split('.')[0] for k in keys if k.startswith(head)})
        decoder = SAMMaskDecoder(
            dim, depth, heads, mlp_dim=keys[layer + '0.mlp.lin1.weight'].shape[0],
            downsample=dim // keys[layer + '0.cross_attn_token_to_image.q_proj.weight'].shape[0],
            num_multimask_outputs=keys['mask_decoder.mask_tokens.weight'].shape[0] - 1,
            iou_head_depth=iou_depth,
            iou_head_hidden=keys[head + '0.weight'].shape[0])
        model = cls(prompt, decoder)
        model.load_state_dict(keys)
        return model.eval().requires_grad_(False)

    def forward(self, image_embedding: torch.Tensor, points: Optional[Tuple[torch.Tensor,
                                                                           torch.Tensor]],
                boxes: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                multimask_output: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """segment_anything's ``SamPredictor.predict_torch`` before its upsampling: prompts
        in the 1024 frame and a (1, C, h, w) image embedding -> low-resolution mask logits
        (B, m, 4h, 4w) and IoU (B, m)."""
        sparse, dense = self.prompt_encoder(points, boxes, mask)
        return self.mask_decoder(image_embedding, self.prompt_encoder.dense_positions(),
                                 sparse, dense, multimask_output)


class SAM(SAMPromptDecoder):
    """A whole SAM: image encoder (:class:`sfp.vfm.sam.SAMImageEncoder`), prompt encoder and
    mask decoder, with a released checkpoint's key names."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: Optional[SAMPromptEncoder] = None,
                 mask_decoder: Optional[SAMMaskDecoder] = None):
        super().__init__(prompt_encoder, mask_decoder)
        self.image_encoder = image_encoder

    @classmethod
    def from_state_dict(cls, state_dict: StateDict) -> SAM:
        """All three parts shaped like a whole SAM state dict, its weights loaded."""
        from .sam import build_sam_image_encoder

        encoder = build_sam_image_encoder(state_dict)
        decoder = SAMPromptDecoder.from_state_dict(state_dict, encoder.input_size,
                                                   encoder.patch_size)
        model = cls(encoder, decoder.prompt_encoder, decoder.mask_decoder)
        return model.to(next(encoder.parameters()).dtype).eval().requires_grad_(False)


def load_sam(name_or_path: Union[str, Path], device: Union[str, torch.device, None] = None,
             dtype: Union[str, torch.dtype, None] = None) -> SAM:
    """A whole SAM from a name ('sam_vit_b', 'sam_vit_l', 'sam_vit_h': downloaded once) or a
    checkpoint file with the released key names, on ``device`` in ``dtype`` ('fp64', a
    torch dtype; default float32).  A missing file, or a file of another family, is a
    one-line error (never random weights)."""
    from ..weights import precision_dtype
    from .sam import load_sam_state_dict

    model = SAM.from_state_dict(load_sam_state_dict(name_or_path))
    return model.to(device=device, dtype=precision_dtype(dtype or torch.float32))


def random_sam(name: str = 'sam_vit_b', seed: int = 0) -> SAM:
    """A SAM of a released architecture with random weights (the image encoder as
    :func:`sfp.vfm.random_vfm` makes it; the released prompt encoder and mask decoder shape,
    PyTorch's default initialisation from ``seed``), for measuring speed and memory."""
    from .loader import random_vfm

    encoder = random_vfm(name, seed)
    torch.manual_seed(seed)
    return SAM(encoder).eval().requires_grad_(False)
