"""ProxyCLIP (Lan et al., ECCV 2024, arXiv 2408.04883), release mc-lan/ProxyCLIP@e7b767f.

CLIP's last block attends with a vision foundation model's (VFM: DINO ViT-B/8, DINOv2
ViT-B/14 with registers or SAM ViT-B's image encoder) patch similarities instead of its own
q-k: the "proxy attention".  Each crop is also given to the VFM; the attention runs on the
VFM's grid (for a 336 crop: DINO 42 x 42, DINOv2 24 x 24, SAM 64 x 64 as it reads every crop
stretched to 1024 x 1024), CLIP's values are resized to it, and the patch features come
out on that grid.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import VisionTransformer
from ..models.detectors import OutlierDetector
from ..models.encoder import BlockWalk, EncoderOutput, MethodEncoder, PartConfig
from ..registry import ENCODERS

#: OpenAI CLIP's pixel normalisation on 0..1 RGB.  The release undoes the segmentor's
#: normalisation with these, which is only about x / 255: the segmentor's mmseg constants
#: are (122.771, 116.746, 104.094) / (68.501, 66.632, 70.323), and 68.501 / 255 is not
#: 0.26862954.  Reproduced, as it changes the VFM's input.
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)


def vfm_view(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The release's VFM input: CLIP-normalised (B, 3, H, W) crops back to 0..1 RGB with
    CLIP's constants (multiply, then add), then normalised the VFM's way (subtract, then
    divide: torchvision's ``Normalize``), in the crops' precision."""
    def channels(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=images.dtype, device=images.device).view(3, 1, 1)

    rgb = images * channels(CLIP_PIXEL_STD) + channels(CLIP_PIXEL_MEAN)
    return (rgb - channels(mean)) / channels(std)


def proxy_attention(features: torch.Tensor, beta: float, gamma: float,
                    shared_mean: bool = False) -> torch.Tensor:
    """ProxyCLIP's attention from VFM patch features: (B, N, C) -> (B, N, N).

    ``S`` = cosine similarities (features L2-normalised with eps 1e-12);
    ``S' = gamma * (S - beta * mean(S))`` with the mean over all N x N entries of the
    crop (diagonal included), or over all crops of the batch together with
    ``shared_mean`` (Trident's release, which batches an image's windows); entries with
    ``S' < 0`` are dropped (-inf); softmax over keys.  A row with no entry left (every
    similarity below ``beta`` x the mean: a uniform crop) keeps its diagonal, i.e. the
    patch attends to itself; the release returns NaN there.  Computed in at least
    float32: the threshold is discontinuous.
    """
    compute = torch.promote_types(features.dtype, torch.float32)
    normed = F.normalize(features.to(compute), dim=-1)
    similarity = normed @ normed.transpose(1, 2)  # (B, N, N)
    mean = similarity.mean() if shared_mean else similarity.mean(dim=(1, 2), keepdim=True)
    scores = gamma * (similarity - beta * mean)
    dropped = scores < 0
    empty = dropped.all(dim=-1)  # (B, N)
    if empty.any():
        dropped = dropped & ~(torch.diag_embed(empty))
    return torch.softmax(scores.masked_fill(dropped, float('-inf')), dim=-1)


def values_on_grid(block: nn.Module, tokens: torch.Tensor, clip_grid: Tuple[int, int],
                   grid: Tuple[int, int]) -> torch.Tensor:
    """A CLIP block's values of (B, 1 + gh*gw, C) tokens, CLS dropped, resized bilinearly
    (align_corners False) from CLIP's (gh, gw) grid to a VFM's (I, J): (B, I*J, C), heads
    side by side."""
    v = block.attn.project_v(block.ln_1(tokens))[:, :, 1:]  # (B, heads, gh*gw, d)
    b, heads, _, d = v.shape
    v = v.transpose(2, 3).reshape(b, heads * d, *clip_grid)
    v = F.interpolate(v, size=grid, mode='bilinear', align_corners=False)
    return v.flatten(2).transpose(1, 2)  # (B, I*J, heads*d), head-major channels


@ENCODERS.register_module(name=['ProxyCLIPEncoder', 'proxyclip'])
class ProxyCLIPEncoder(MethodEncoder):
    """CLIP's last block replaced by the proxy attention over a VFM's patch features.

    Per crop: the VFM reads the crop (:func:`vfm_view`) and gives its last block's patch
    tokens after its final norm, on its grid (I, J); :func:`proxy_attention` gives A
    (IJ x IJ), the same for every head.  CLIP's last block keeps only its value
    projection: v of ``ln_1`` of block L-1's output (purified there with ``purify``),
    CLS dropped, each head's (gh, gw) grid resized bilinearly to (I, J); the output is
    ``out_proj(concat_h A v_h)``, with no residual and no MLP, then ``ln_post`` and the
    projection: (B, I*J, D) features on the VFM's grid (``logit_stride`` = its patch).

    Args:
        visual: the CLIP ViT image tower.
        vfm: the VFM tower (:class:`sfp.vfm.VFMTower`, e.g. DINO ViT-B/8).
        beta: the similarity threshold, as a multiple of the mean similarity.
        gamma: the temperature on the thresholded similarities.
        detector, mitigation, detect_block, stream_mitigation_blocks: purification (see
            :class:`~sfp.models.encoder.MethodEncoder`); the release has none.
    """

    uses_vfm = True

    def __init__(self,
                 visual: VisionTransformer,
                 vfm: nn.Module,
                 beta: float = 1.2,
                 gamma: float = 3.0,
                 detector: Union[OutlierDetector, str, dict, None] = None,
                 mitigation: PartConfig = None,
                 detect_block: Optional[int] = None,
                 stream_mitigation_blocks: Sequence[int] = ()):
        super().__init__(visual, detector, mitigation, detect_block, stream_mitigation_blocks)
        self.vfm = vfm
        self.beta = beta
        self.gamma = gamma

    @property
    def logit_stride(self) -> int:
        return self.vfm.patch_size

    @property
    def fixed_grid(self) -> Optional[Tuple[int, int]]:
        """The grid of a VFM that reads one input size (SAM: 64 x 64 for every crop)."""
        size = getattr(self.vfm, 'input_size', None)
        return None if size is None else self.vfm.grid_size(size, size)

    def vfm_input_size(self, height: int, width: int) -> Tuple[int, int]:
        """The size the VFM reads a crop at: its own, or the crop's."""
        size = getattr(self.vfm, 'input_size', None)
        return (height, width) if size is None else (size, size)

    def working_set(self, height: int, width: int) -> int:
        """CLIP's walk, the VFM's blocks (its attention materialised), and the proxy
        attention's N' x N' matrices (similarity, scores, mask, weights) on its grid."""
        rows, cols = self.vfm.grid_size(*self.vfm_input_size(height, width))
        n = rows * cols + self.vfm.num_prefix_tokens
        vfm = n * self.vfm.width * 12 + 2 * self.vfm.num_heads * n * n
        return super().working_set(height, width) + vfm + 4 * n * n

    def vfm_features(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, 3, H, W) CLIP-normalised crops -> the VFM's patch features (B, I*J, C)
        and its grid (I, J).  A VFM with an input size of its own (SAM: 1024 x 1024) reads
        the crops stretched to it (bilinear, no antialias), as the release feeds SAM."""
        view = vfm_view(images, self.vfm.mean, self.vfm.std)
        size = self.vfm_input_size(*images.shape[-2:])
        if size != tuple(images.shape[-2:]):
            view = F.interpolate(view, size=size, mode='bilinear', align_corners=False)
        return self.vfm.patch_tokens(view), self.vfm.grid_size(*size)

    def attention(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The proxy attention (B, I*J, I*J) of crops, and the VFM grid (I, J)."""
        features, grid = self.vfm_features(images)
        return proxy_attention(features, self.beta, self.gamma), grid

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The proxy attention as one head (B, 1, I*J, I*J), on the VFM's grid: every head
        of the last block applies it."""
        attention, grid = self.attention(walk.images)
        return attention[:, None], grid

    def values(self, tokens: torch.Tensor, clip_grid: Tuple[int, int],
               grid: Tuple[int, int]) -> torch.Tensor:
        """:func:`values_on_grid` of the last block."""
        return values_on_grid(self.last_block, tokens, clip_grid, grid)

    def forward(self, images: torch.Tensor,
                contexts: Optional[Sequence[Any]] = None) -> EncoderOutput:
        walk = self.walk(images)
        attention, grid = self.attention(images)
        v = self.values(walk.tokens, walk.grid, grid)
        # One attention for every head: A (v_1 | ... | v_h) = (A v_1 | ... | A v_h).
        out = self.last_block.attn.out_proj(attention.to(v.dtype) @ v)
        return EncoderOutput(self.visual.project(out), walk.outliers, grid)
