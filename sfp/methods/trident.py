"""Trident (Shi, Dong, Xu, ICCV 2025, arXiv 2411.09219), release YuHengsss/Trident@a93b346.

Three networks.  CLIP and DINO run on windows of the image: CLIP's last block takes
ProxyCLIP's proxy attention over DINO's patch similarities (the mean similarity over all of
the image's windows together), and the windows' outputs, before ``ln_post``, are spliced
into one map (overlaps averaged).  SAM's image encoder runs once on the whole image; its
last block's attention, kept where SAM's own values are similar enough, aggregates the
spliced map globally on SAM's grid.  Optionally (``sam_refinement``, on in every released
evaluation) the labels are refined with SAM prompts (:mod:`sfp.models.sam_refinement`).
Every step, with the release's quirks, is in ``docs/methods/trident.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..clip.model import VisionTransformer
from ..models.data_preprocessor import CLIP_MEAN, CLIP_STD
from ..models.encoder import BlockWalk, EncoderOutput
from ..models.inference import window_spans
from ..models.sam_refinement import SAMRefinement, longest_side_shape
from ..registry import ENCODERS
from .proxyclip import ProxyCLIPEncoder, proxy_attention

#: SAM's pixel normalisation on 0..255 RGB (``Sam.pixel_mean`` / ``pixel_std``).
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
#: The release's clamp of SAM's similarity threshold, and the value a negative threshold
#: takes without ``refine_neg_cos``.
MAX_THRESHOLD = 0.9
NEGATIVE_THRESHOLD = 0.6


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def clip_input_shape(height: int, width: int, patch: int, crop: int) -> Tuple[int, int]:
    """The release's ``preprocess_image``: an image whose sides are both multiples of the
    patch is kept as it is; otherwise both sides are scaled by (longer side rounded up to
    the patch) / longer side, truncated, rounded up to the patch, and raised to ``crop``."""
    if height % patch == 0 and width % patch == 0:
        return height, width
    longer = max(height, width)
    target = round_up(longer, patch)
    rows = round_up(int(height * target / longer), patch)
    cols = round_up(int(width * target / longer), patch)
    return max(rows, crop), max(cols, crop)


def sam_input_image(rgb: np.ndarray, patch: int, image_size: int) -> Tuple[np.ndarray,
                                                                           Tuple[int, int]]:
    """The picture SAM encodes, as the release makes it from the (H0, W0, 3) uint8 RGB image:
    each side rounded up to a multiple of ``patch`` (OpenCV's bilinear resize), then the
    longer side brought to ``image_size`` by PIL's bilinear resize (antialiased when
    shrinking), as segment_anything's ``ResizeLongestSide`` does.  Returns the (h1, w1, 3)
    picture and the rounded size (Hs, Ws)."""
    height, width = rgb.shape[:2]
    rounded = round_up(height, patch), round_up(width, patch)
    if rounded != (height, width):
        rgb = cv2.resize(rgb, (rounded[1], rounded[0]), interpolation=cv2.INTER_LINEAR)
    target = longest_side_shape(*rounded, image_size)
    if target != rounded:
        rgb = np.array(Image.fromarray(rgb).resize((target[1], target[0]),
                                                   Image.Resampling.BILINEAR))
    return rgb, rounded


def input_to_rgb(image: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A CLIP-normalised (3, h, w) model input back to (H, W, 3) uint8 RGB (rounded), resized
    bilinearly to ``size`` (the original size) when given: SAM's picture when the image's
    file is not known."""
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float64).view(3, 1, 1)
    pixels = (image.detach().to('cpu', torch.float64) * std + mean).round().clamp(0, 255)
    rgb = np.ascontiguousarray(pixels.to(torch.uint8).permute(1, 2, 0).numpy())
    if size is not None and tuple(size) != rgb.shape[:2]:
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return rgb


def original_rgb(image: torch.Tensor, meta: Optional[dict]) -> np.ndarray:
    """The image at its original size, (H0, W0, 3) uint8 RGB: read again from its file
    (``img_path``, as the release does), or rebuilt from the model input at ``ori_shape``
    when the sample names no file (an array given to the demo or the API)."""
    from ..datasets import read_image  # the datasets package imports the segmentor

    meta = meta or {}
    path = meta.get('img_path')
    if path and Path(path).is_file():
        return np.ascontiguousarray(read_image(path)[..., ::-1])
    size = meta.get('ori_shape')
    return input_to_rgb(image, tuple(size[:2]) if size is not None else None)


@dataclass
class SAMView:
    """What SAM's image encoder gives Trident for one picture.

    Attributes:
        embedding: (1, C, 64, 64) the encoder's output (the neck's), the mask decoder's input.
        attention: (heads, N, N) the last block's attention probabilities on the valid grid
            (N = rows * cols, row-major; rows not renormalised after the cut).
        values: (heads, N, d) the last block's values there.
        grid: the valid grid (rows, cols) = (h1 // 16, w1 // 16).
        input_size: (h1, w1) the picture's size in SAM's 1024 frame.
        rounded_size: (Hs, Ws) the image rounded up to multiples of CLIP's patch.
    """

    embedding: torch.Tensor
    attention: torch.Tensor
    values: torch.Tensor
    grid: Tuple[int, int]
    input_size: Tuple[int, int]
    rounded_size: Tuple[int, int]


@dataclass
class TridentTrace:
    """One image's intermediate results (for inspection and the parity tests).

    Attributes:
        clip_shape: (h', w') the CLIP input after the release's resize.
        boxes: token boxes (y1, x1, y2, x2) of the windows, row by row.
        vfm_features: (n, I*J, C) DINO's patch features of each window.
        window_outputs: (n, I*J, D) the proxy attention's output of each window.
        spliced: (D, gh, gw) the windows' outputs spliced.
        sam: the SAM view(s) of the image (two halves for Cityscapes).
        thresholds, guidance: per SAM view, (N,) the similarity thresholds and (N, N) the
            aggregation weights.
    """

    clip_shape: Tuple[int, int]
    boxes: List[Tuple[int, int, int, int]]
    vfm_features: torch.Tensor
    window_outputs: torch.Tensor
    spliced: torch.Tensor
    sam: List[SAMView]
    thresholds: List[torch.Tensor]
    guidance: List[torch.Tensor]


def sam_guidance(attention: torch.Tensor, values: torch.Tensor, cos_fac: float,
                 refine_neg_cos: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Trident's aggregation weights from SAM's last block: (heads, N, N) attention and
    (heads, N, d) values -> (N, N) weights and (N,) thresholds.

    C_h = cosine similarities of head h's values; t_m = ``cos_fac`` x the mean of C[:, m, :]
    over heads and keys (a negative t is 0.6 unless ``refine_neg_cos``; t is clamped to
    0.9); the attention is kept where C_h[m, n] > t_m, averaged over heads, and each row
    normalised to sum 1 (the diagonal, C = 1 > 0.9, always survives).
    """
    unit = F.normalize(values, dim=-1)
    similarity = unit @ unit.transpose(-2, -1)  # (heads, N, N)
    threshold = cos_fac * similarity.mean(dim=0).mean(dim=-1)  # (N,)
    if not refine_neg_cos:
        threshold = torch.where(threshold < 0, NEGATIVE_THRESHOLD, threshold)
    threshold = threshold.clamp(max=MAX_THRESHOLD)
    kept = torch.where(similarity > threshold[:, None], attention, 0).mean(dim=0)
    return kept / kept.sum(dim=-1, keepdim=True), threshold


@ENCODERS.register_module(name=['TridentEncoder', 'trident'])
class TridentEncoder(ProxyCLIPEncoder):
    """CLIP and DINO on windows, spliced, aggregated with SAM's attention (Trident).

    The segmentor hands it whole images (``encodes_whole_images``) with their metainfo; it
    windows them itself (``slide_crop`` / ``slide_stride``, the segmentor's), as the
    release splices the windows' features, not their logits.  See the module doc.

    Args:
        visual: CLIP's image tower.
        vfm: DINO (``vfm_path``); any VFM tower whose patch is CLIP's or divides it.
        sam: SAM (``sam_path``; :class:`sfp.vfm.SAM`): its image encoder, prompt encoder and
            mask decoder.
        slide_crop, slide_stride: the windows (given by the segmentor).
        beta, gamma: the proxy attention's (ProxyCLIP's).
        cos_fac: SAM similarity threshold, as a multiple of each token's mean similarity.
        refine_neg_cos: keep negative thresholds (else they become 0.6).
        sam_refinement: refine the labels with SAM prompts.
        coarse_thresh, minimal_area, sam_mask_coff, sam_iou_thresh: the refinement's
            (:class:`~sfp.models.sam_refinement.SAMRefinement`).
        dataset_type: 'CityscapesDataset' encodes the left and right halves of the image
            with SAM separately (the release's Cityscapes branch).
        **kwargs: :class:`~sfp.models.encoder.MethodEncoder` arguments (purification).
    """

    uses_sam = True
    encodes_whole_images = True

    def __init__(self, visual: VisionTransformer, vfm: nn.Module, sam: nn.Module,
                 slide_crop: int = 336, slide_stride: int = 224, beta: float = 1.2,
                 gamma: float = 3.0, cos_fac: float = 1.2, refine_neg_cos: bool = True,
                 sam_refinement: bool = True, coarse_thresh: float = 0.2,
                 minimal_area: int = 225, sam_mask_coff: float = 0.005,
                 sam_iou_thresh: float = 0.8, dataset_type: str = 'PascalVOCDataset',
                 **kwargs):
        super().__init__(visual, vfm, beta, gamma, **kwargs)
        patch = visual.patch_size
        if not slide_crop or not slide_stride or slide_crop % patch or slide_stride % patch:
            raise ValueError(f'Trident splices its windows on CLIP\'s patch grid: slide_crop and '
                             f'slide_stride must be positive multiples of {patch}, got '
                             f'{slide_crop} and {slide_stride}')
        if patch % vfm.patch_size:
            raise ValueError(f'the VFM\'s patch ({vfm.patch_size}) must divide CLIP\'s ({patch}) '
                             f'for Trident\'s splice')
        self.sam = sam
        self.slide_crop = slide_crop
        self.slide_stride = slide_stride
        self.cos_fac = cos_fac
        self.refine_neg_cos = refine_neg_cos
        self.split_halves = dataset_type == 'CityscapesDataset'
        self.refinement = SAMRefinement(coarse_thresh, minimal_area, sam_mask_coff,
                                        sam_iou_thresh) if sam_refinement else None

    # -- SAM -----------------------------------------------------------------------------
    def sam_view(self, rgb: np.ndarray) -> SAMView:
        """SAM's encoding of an (H, W, 3) uint8 RGB image (see :func:`sam_input_image`)."""
        encoder = self.sam.image_encoder
        size = encoder.input_size
        picture, rounded = sam_input_image(rgb, self.visual.patch_size, size)
        param = encoder.pos_embed
        x = torch.from_numpy(np.array(picture)).to(param.device, param.dtype)
        mean = torch.tensor(SAM_PIXEL_MEAN, dtype=torch.float64).to(x)
        std = torch.tensor(SAM_PIXEL_STD, dtype=torch.float64).to(x)
        x = ((x - mean) / std).permute(2, 0, 1)
        x = F.pad(x, (0, size - x.shape[2], 0, size - x.shape[1]))[None]
        embedding, attention, values = encoder.forward_with_attention(x)
        side = embedding.shape[-1]
        rows, cols = picture.shape[0] // encoder.patch_size, picture.shape[1] // encoder.patch_size
        heads = attention.shape[1]
        attention = attention[0].view(heads, side, side, side, side)[:, :rows, :cols, :rows, :cols]
        values = values[0].view(heads, side, side, -1)[:, :rows, :cols]
        return SAMView(embedding, attention.reshape(heads, rows * cols, rows * cols),
                       values.reshape(heads, rows * cols, -1), (rows, cols),
                       tuple(picture.shape[:2]), rounded)

    def sam_views(self, rgb: np.ndarray) -> List[SAMView]:
        """The SAM views the aggregation reads: the whole image, or its two halves."""
        if not self.split_halves:
            return [self.sam_view(rgb)]
        patch = self.visual.patch_size
        height, width = round_up(rgb.shape[0], patch), round_up(rgb.shape[1], patch)
        rounded = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR) \
            if (height, width) != rgb.shape[:2] else rgb
        return [self.sam_view(np.ascontiguousarray(rounded[:, :width // 2])),
                self.sam_view(np.ascontiguousarray(rounded[:, width // 2:]))]

    # -- CLIP and DINO on windows --------------------------------------------------------
    def windows(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """Windows (y1, y2, x1, x2) of the resized input, row by row (mmseg's scheme)."""
        return [(y1, y2, x1, x2)
                for y1, y2 in window_spans(height, self.slide_crop, self.slide_stride)
                for x1, x2 in window_spans(width, self.slide_crop, self.slide_stride)]

    def window_outputs(self, crops: torch.Tensor) -> Tuple[BlockWalk, torch.Tensor,
                                                           torch.Tensor, Tuple[int, int]]:
        """The windows' walk, DINO features (n, I*J, C), proxy attention outputs
        (n, I*J, D) before ``ln_post`` (the mean similarity over all of them), VFM grid."""
        walk = self.walk(crops)
        features, grid = self.vfm_features(crops)
        attention = proxy_attention(features, self.beta, self.gamma, shared_mean=True)
        v = self.values(walk.tokens, walk.grid, grid)
        return walk, features, self.last_block.attn.out_proj(attention.to(v.dtype) @ v), grid

    def splice(self, outputs: torch.Tensor, grid: Tuple[int, int],
               boxes: Sequence[Tuple[int, int, int, int]],
               canvas: Tuple[int, int]) -> torch.Tensor:
        """(n, I*J, D) window outputs on a (I, J) grid -> (D, r*gh, r*gw) map, each window at
        its token box (y1, x1, y2, x2) scaled by r = I / its patch rows, overlaps averaged."""
        y1, x1, y2, x2 = boxes[0]
        ratio = grid[0] // (y2 - y1)
        maps = outputs.transpose(1, 2).reshape(len(outputs), -1, *grid)
        total = maps.new_zeros(maps.shape[1], canvas[0] * ratio, canvas[1] * ratio)
        count = maps.new_zeros(1, *total.shape[1:])
        for window, (y1, x1, y2, x2) in zip(maps, boxes):
            rows, cols = slice(y1 * ratio, y2 * ratio), slice(x1 * ratio, x2 * ratio)
            total[:, rows, cols] += window
            count[:, rows, cols] += 1
        return total / count

    def aggregate(self, spliced: torch.Tensor, views: List[SAMView]) -> Tuple[
            torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """The spliced map aggregated with SAM's weights on each view's grid (halves side by
        side): (rows, cols_total, D) tokens before ``ln_post``, and per view the weights and
        thresholds."""
        parts = [spliced] if len(views) == 1 else [spliced[..., :spliced.shape[-1] // 2],
                                                     spliced[..., spliced.shape[-1] // 2:]]
        outputs, weights, thresholds = [], [], []
        for part, view in zip(parts, views):
            resized = F.interpolate(part[None], size=view.grid, mode='bilinear',
                                    align_corners=False)[0]
            tokens = resized.flatten(1).t()  # (N, D)
            guidance, threshold = sam_guidance(view.attention, view.values, self.cos_fac,
                                               self.refine_neg_cos)
            outputs.append((guidance.to(tokens.dtype) @ tokens).view(*view.grid, -1))
            weights.append(guidance)
            thresholds.append(threshold)
        return torch.cat(outputs, dim=1), weights, thresholds

    # -- the encoder ---------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor, meta: Optional[dict] = None
                     ) -> Tuple[EncoderOutput, TridentTrace, Optional[Any]]:
        """One CLIP-normalised (3, h, w) image -> features (1, N, D) on SAM's grid, its
        trace, and its refinement (a callable ``(probs, labels) -> (probs, labels)`` at the
        original size; None without ``sam_refinement``).  ``meta``: the sample's metainfo
        (``img_path``, ``ori_shape``): SAM reads the image's file at its original size."""
        rgb = original_rgb(image, meta)
        views = self.sam_views(rgb)
        patch = self.visual.patch_size
        shape = clip_input_shape(*image.shape[-2:], patch, self.slide_crop)
        x = image[None]
        if shape != tuple(image.shape[-2:]):
            x = F.interpolate(x, size=shape, mode='bilinear', align_corners=False)
        windows = self.windows(*shape)
        crops = torch.cat([x[..., y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        walk, vfm_features, outputs, grid = self.window_outputs(crops)
        boxes = [(y1 // patch, x1 // patch, y2 // patch, x2 // patch)
                 for y1, y2, x1, x2 in windows]
        spliced = self.splice(outputs, grid, boxes, (shape[0] // patch, shape[1] // patch))
        tokens, weights, thresholds = self.aggregate(spliced, views)
        features = self.visual.project(tokens.flatten(0, 1))[None]
        refine = None
        if self.refinement is not None:
            whole = views[0] if not self.split_halves else self.sam_view(rgb)
            refine = self.refinement.bind(self.sam, whole, rgb.shape[:2])
        trace = TridentTrace(shape, boxes, vfm_features, outputs, spliced, views,
                             thresholds, weights)
        return EncoderOutput(features, walk.outliers, tuple(tokens.shape[:2])), trace, refine

    def forward(self, images: torch.Tensor,
                contexts: Optional[Sequence[Any]] = None) -> EncoderOutput:
        """Whole CLIP-normalised images (B, 3, h, w) -> features (B, N, D) on SAM's grid
        (``contexts``: each image's metainfo, or None)."""
        contexts = list(contexts) if contexts is not None else [None] * len(images)
        outputs = [self.encode_image(img, meta)[0] for img, meta in zip(images, contexts)]
        return EncoderOutput(torch.cat([o.features for o in outputs]), outputs[0].outliers,
                             outputs[0].grid)

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The SAM-guided aggregation weights of each walked image, as one head
        (B, 1, N, N) on SAM's grid (the first view's: the left half for Cityscapes)."""
        weights, grid = [], None
        for image in walk.images:
            _, trace, _ = self.encode_image(image)
            weights.append(trace.guidance[0])
            grid = trace.sam[0].grid
        return torch.stack(weights)[:, None], grid

