"""Looking inside SFP and the other methods: attention, token norms, outliers, purified
similarities, and each method's last-block attention.

Everything here runs the method's own encoder (:class:`sfp.models.MethodEncoder`): its
walk over blocks 1..L-1, with its purification hook and ``stream_mitigation_blocks``, and
its own last-block code.  Nothing re-implements a block loop or a method's attention:

- :func:`analyze_image` observes the walk.  Each walked block's attention weights and
  output come from the block's own ``forward_with_weights`` applied to the tokens the walk
  handed that block (so blocks after a stream-mitigation block see purified tokens).
- :func:`last_block_attention` reads a method's last-block attention weights out of the
  method's own attention code.  Every method's last-block attention is linear in its
  values V, so running it with V = the identity returns the attention matrix itself
  (:class:`IdentityValueProbe`).  A method whose attention does not come from the walk
  alone computes it itself (:meth:`~sfp.models.MethodEncoder.attention_map`: ProxyCLIP's
  proxy attention, from its VFM on the same crop, on the VFM's grid).
- :func:`patch_neighbourhood` gives a query patch's neighbours in the kNN graph of the
  segmentor's label propagation (LPOSS).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .apis import init_segmentor, method_sam, method_vfm, prepare_image, segment_images
from .masks import RegionMasks
from .models import (
                     BlockWalk,
                     LastBlockAttentionEncoder,
                     MethodEncoder,
                     SemanticAwareAttentionEnhancer,
                     SFPSegmentor,
                     build_detector,
                     guidance_similarity,
)
from .models.propagation import knn_search

DEFAULT_DETECTORS = ('SOM', 'L2', 'LOF', 'DBSCAN', 'KMeans', 'cls_attn')
DEFAULT_GUIDANCE_BLOCK = 9  # SFP's and SC-CLIP's guidance block
DEFAULT_SIMILARITY_THRESHOLD = 0.4


@dataclass
class OutlierAnalysis:
    """What :func:`analyze_image` found.  Blocks count from 1 (index i is block i + 1);
    the per-block maps cover the walked blocks 1..L-1 (block L is the method's).

    Attributes:
        crop: (h, w, 3) RGB uint8 crop that was analysed (after resizing the image).
        grid: its patch grid (rows, cols).
        cls_attention: (L - 1, rows, cols) head-averaged CLS-to-patch attention per block.
        token_norms: (L - 1, rows, cols) L2 norm of each block's output patch tokens
            (before any mitigation of that block's outliers).
        outliers: detector name -> (row, col) outliers at the detection block.
        detect_block: the block the detectors read.
        similarity_raw: (N, N) thresholded cosine similarity of the guidance block's
            patches as they are.
        similarity_purified: the same after the encoder's own mitigation of the outliers
            its detector found (what SFP uses; equal to the raw one without a detector).
        last_block: the method's last-block attention (see :func:`last_block_attention`).
        labels: (H, W) segmentation of the whole image at its own size.
        class_names: display name of each label.
        regions: (H, W) its class-agnostic region map when the segmentor has a mask
            source (``masks``), else None.
    """

    crop: np.ndarray
    grid: Tuple[int, int]
    cls_attention: torch.Tensor
    token_norms: torch.Tensor
    outliers: Dict[str, List[Tuple[int, int]]]
    detect_block: int
    similarity_raw: torch.Tensor
    similarity_purified: torch.Tensor
    last_block: LastBlockAttention
    labels: np.ndarray
    class_names: List[str]
    regions: Optional[np.ndarray] = None

    def similarity_map(self, row: int, col: int, purified: bool = True) -> torch.Tensor:
        """(rows, cols) similarity of every patch to patch (row, col)."""
        sim = self.similarity_purified if purified else self.similarity_raw
        return sim[row * self.grid[1] + col].view(self.grid)


@dataclass
class LastBlockAttention:
    """A method's last-block attention on one crop.

    Attributes:
        weights: (heads, T, T) attention weights, row = query token; T = 1 + N with the
            CLS token first, or N when the method's last block attends over patches only
            (SFP's enhancer, SC-CLIP's guided attention, ProxyCLIP's proxy attention: one
            head, on its VFM's grid).  Rows are as the method computes them: SCLIP sums
            two softmaxes (rows sum to 2), CLIPtrase three (rows sum to 3), a zeroed
            guidance row of SFP sums to less than 1.
        grid: grid (rows, cols) of the patches the weights are over: CLIP's, or a
            method's own (ProxyCLIP: its VFM's, 2 x finer for DINO ViT-B/8).
    """

    weights: torch.Tensor
    grid: Tuple[int, int]

    @property
    def has_cls(self) -> bool:
        return self.weights.shape[-1] == self.grid[0] * self.grid[1] + 1

    def query_map(self, row: int, col: int,
                  grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(rows, cols) head-averaged attention of patch (row, col) of ``grid`` (default
        this attention's own) to every patch, on this attention's grid.  Where that grid
        is finer (ProxyCLIP's), the rows of the cells the patch covers are averaged."""
        grid = grid or self.grid
        offset = int(self.has_cls)
        weights = self.weights.mean(0)
        (r0, r1), (c0, c1) = (_covered(i, n, own) for i, n, own in
                              zip((row, col), grid, self.grid))
        queries = [offset + r * self.grid[1] + c for r in range(r0, r1) for c in range(c0, c1)]
        return weights[queries, offset:].mean(0).view(self.grid)


def _covered(index: int, count: int, own: int) -> Tuple[int, int]:
    """Cells [start, end) of an axis of ``own`` cells that cell ``index`` of ``count``
    cells over the same extent overlaps."""
    return index * own // count, max(index * own // count + 1, -(-(index + 1) * own // count))


@dataclass
class AttentionComparison:
    """What :func:`compare_last_block_attention` found.

    Attributes:
        crop: (h, w, 3) RGB uint8 crop that was analysed.
        grid: its patch grid (rows, cols).
        methods: name -> that method's last-block attention on the crop.
    """

    crop: np.ndarray
    grid: Tuple[int, int]
    methods: Dict[str, LastBlockAttention]

    def query_maps(self, row: int, col: int) -> Dict[str, torch.Tensor]:
        """Each method's attention of patch (row, col) of :attr:`grid` to every patch, on
        the method's own grid (see :meth:`LastBlockAttention.query_map`)."""
        return {name: attention.query_map(row, col, self.grid)
                for name, attention in self.methods.items()}


def center_crop(image: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """(3, H, W) -> central (3, min(size, H), min(size, W)) crop; None keeps all."""
    if size is None:
        return image
    h, w = image.shape[-2:]
    top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
    return image[:, top:top + size, left:left + size]


def _prepared_crop(segmentor: SFPSegmentor, image_bgr: np.ndarray, crop: Optional[int],
                   short_side: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (3, h, w) uint8 BGR crop and its (1, 3, h, w) CLIP-normalised RGB input in the
    segmentor's device and precision."""
    prepared = center_crop(prepare_image(image_bgr, short_side), crop)
    x = segmentor.data_preprocessor(dict(inputs=[prepared]), False)['inputs']
    return prepared, x.to(device=segmentor.query_features.device, dtype=segmentor.dtype)


def _prepared_regions(regions: Optional[np.ndarray], image_bgr: np.ndarray, crop: Optional[int],
                      short_side: int) -> Optional[torch.Tensor]:
    """An image's (H, W) region map as its analysed crop sees it: resized with the image
    (nearest, as the segmentor resizes a mask source's), then cut like it: (1, h, w)."""
    if regions is None:
        return None
    regions = torch.as_tensor(np.asarray(regions)).long()
    if tuple(regions.shape) != image_bgr.shape[:2]:
        raise ValueError(f'regions of {tuple(regions.shape)} for an image of '
                         f'{image_bgr.shape[:2]}: give the image\'s region map (H, W)')
    size = tuple(prepare_image(image_bgr, short_side).shape[-2:])
    resized = RegionMasks.from_label_map(regions).resized(size)
    return center_crop(resized.label_map()[None], crop)


def _as_rgb(prepared: torch.Tensor) -> np.ndarray:
    return prepared.flip(0).permute(1, 2, 0).numpy()


class IdentityValueProbe(nn.Module):
    """Stands in for a ViT block in a method's attention code, with the identity as values.

    An attention output is W V; with V = I (one value dimension per token) it is W.  The
    probe hands out the block's own ``ln_1`` and q/k projections, the identity for V, and
    returns attention outputs unmerged (``merge_heads`` is the identity), so a method's
    attention code run on it returns its (B, heads, T, T) attention weights.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.ln_1 = block.ln_1
        self.attn = self

    @staticmethod
    def _identity(like: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, T) identity matching a (B, heads, T, d) tensor."""
        b, h, t, _ = like.shape
        return torch.eye(t, dtype=like.dtype, device=like.device).expand(b, h, t, t)

    def project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.block.attn.project_qkv(x)
        return q, k, self._identity(v)

    def project_v(self, x: torch.Tensor) -> torch.Tensor:
        return self._identity(self.block.attn.project_v(x))

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def last_block_attention(encoder: MethodEncoder, walk: BlockWalk) -> torch.Tensor:
    """A method's last-block attention weights (B, heads, T, T), computed by the encoder's
    own code on a walk of it (``encoder.walk(images)``).

    - A :class:`~sfp.models.LastBlockAttentionEncoder` (CLIP's q-k, MaskCLIP's identity,
      ClearCLIP's q-q, SCLIP's q-q + k-k, NACLIP's k-k with its Gaussian bias): its
      ``attention`` on the last block's ``ln_1`` of the walked tokens, run with the
      identity as values; T = 1 + N.
    - An encoder whose last block is a :class:`~sfp.models.SemanticAwareAttentionEnhancer`
      (SFP's rebuilt attention, SC-CLIP's guided attention): the encoder's ``head`` runs,
      the enhancer's first call is recorded and rerun on the probe; T = N.
    - An encoder that hands out its own (its
      :meth:`~sfp.models.MethodEncoder.attention_map` is not None: ResCLIP's second
      pass, whose maps come from a first pass with the real values; ProxyCLIP's, on its
      VFM's grid; CLIPtrase's, whose v-v term reads the values).
    """
    own = encoder.attention_map(walk)
    if own is not None:
        return own[0]
    if isinstance(encoder, LastBlockAttentionEncoder):
        block = encoder.last_block
        return encoder.attention(IdentityValueProbe(block), block.ln_1(walk.tokens), walk.grid)
    enhancers = [m for m in encoder.modules() if isinstance(m, SemanticAwareAttentionEnhancer)]
    if not enhancers:
        raise ValueError(f'{type(encoder).__name__} has no last-block attention to read: '
                         f'expected a LastBlockAttentionEncoder or an encoder with a '
                         f'SemanticAwareAttentionEnhancer (not an ablation without one)')
    calls = []

    def record(module, args, kwargs, output):
        if not calls:
            calls.append((module, inspect.signature(module.forward).bind(*args, **kwargs)))

    handles = [m.register_forward_hook(record, with_kwargs=True) for m in enhancers]
    try:
        encoder.head(walk)
    finally:
        for handle in handles:
            handle.remove()
    enhancer, bound = calls[0]
    if 'vv' in enhancer.terms:
        raise ValueError("an enhancer with the 'vv' term weighs its values by their own "
                         "similarity, so its attention cannot be read with the identity as "
                         "values; compare enhancers without it")
    arguments = bound.arguments
    # The CLS residual is added after the heads are merged: zero keeps the weights alone.
    return enhancer(IdentityValueProbe(arguments['block']), arguments['patches'],
                    arguments['cls'].new_zeros(()), arguments['guidance'])


@torch.no_grad()
def method_attention(encoder: MethodEncoder, walk: BlockWalk) -> LastBlockAttention:
    """The last-block attention of the first of the walked crops: the method's own
    (:meth:`~sfp.models.MethodEncoder.attention_map`) where it computes it, else read out
    of its attention code (:func:`last_block_attention`)."""
    own = encoder.attention_map(walk)
    weights, grid = own if own is not None else (last_block_attention(encoder, walk), walk.grid)
    return LastBlockAttention(weights[0].float().cpu(), grid)


class WalkRecorder:
    """Records what an encoder's walk does in each walked block (1..L-1): the attention
    weights and the output of the block's own ``forward_with_weights`` on the tokens the
    walk handed it (through a hook on the block's ``ln_1``, which every block pass calls
    first).  Use as a context manager around ``encoder.walk(images)``."""

    def __init__(self, encoder: MethodEncoder):
        self.blocks = list(encoder.visual.blocks[:encoder.visual.num_blocks - 1])
        self.attention: Dict[int, torch.Tensor] = {}  # block -> (B, heads, 1 + N, 1 + N)
        self.outputs: Dict[int, torch.Tensor] = {}  # block -> (B, 1 + N, C)
        self._handles = []
        self._busy = False

    def _hook(self, index: int):
        block = self.blocks[index - 1]

        def record(module, args, output):
            if self._busy or index in self.outputs:
                return
            self._busy = True  # forward_with_weights calls ln_1 again
            try:
                self.outputs[index], self.attention[index] = block.forward_with_weights(args[0])
            finally:
                self._busy = False

        return record

    def __enter__(self) -> WalkRecorder:
        self._handles = [block.ln_1.register_forward_hook(self._hook(i))
                         for i, block in enumerate(self.blocks, start=1)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@torch.no_grad()
def analyze_image(segmentor: SFPSegmentor, image_bgr: np.ndarray,
                  detectors: Sequence = DEFAULT_DETECTORS, crop: Optional[int] = 224,
                  short_side: int = 336,
                  image_path: Optional[Union[str, Path]] = None) -> OutlierAnalysis:
    """Analyse the central ``crop`` of an image resized to ``short_side`` (see module doc).

    Args:
        segmentor: supplies the method's encoder (its walk, detector, mitigation and
            blocks) and the final segmentation.
        image_bgr: (H, W, 3) uint8 BGR image (e.g. from :func:`sfp.datasets.read_image`).
        detectors: names or configs of the detectors to compare.
        crop: side of the analysed crop (224 is one sliding window); None for the whole
            resized image.
        image_path: the file the image came from (a segmentor's mask folder finds its
            masks by it).
    """
    encoder = segmentor.encoder
    prepared, x = _prepared_crop(segmentor, image_bgr, crop, short_side)
    with WalkRecorder(encoder) as recorded:
        walk = encoder.walk(x)
    grid, blocks = walk.grid, sorted(recorded.outputs)
    cls_attention = [recorded.attention[b].mean(1)[0, 0, 1:].view(grid) for b in blocks]
    norms = [recorded.outputs[b][0, 1:].norm(dim=-1).view(grid) for b in blocks]
    detected = (recorded.outputs[encoder.detect_block], recorded.attention[encoder.detect_block])
    found = {}
    for cfg in detectors:
        name = cfg if isinstance(cfg, str) else cfg['type']
        found[name] = build_detector(cfg)(*detected, grid).positions(0)
    guidance_block = getattr(encoder, 'pre_guidance_block', DEFAULT_GUIDANCE_BLOCK)
    threshold = getattr(encoder, 'similarity_threshold', DEFAULT_SIMILARITY_THRESHOLD)
    guidance = recorded.outputs[guidance_block][:, 1:]
    raw = purified = guidance_similarity(guidance, threshold)[0]
    if walk.outliers is not None:
        mitigated = encoder.mitigation(guidance, walk.outliers.mask(), grid)
        purified = guidance_similarity(mitigated, threshold)[0]
    last = method_attention(encoder, walk)
    prediction = segment_images(segmentor, [image_bgr], short_side,
                                None if image_path is None else [image_path])[0]
    return OutlierAnalysis(
        crop=_as_rgb(prepared), grid=grid,
        cls_attention=torch.stack(cls_attention).float().cpu(),
        token_norms=torch.stack(norms).float().cpu(),
        outliers=found, detect_block=encoder.detect_block,
        similarity_raw=raw.float().cpu(), similarity_purified=purified.float().cpu(),
        last_block=last, labels=prediction.pred_sem_seg.data[0].cpu().numpy(),
        regions=(prediction.pred_regions.data[0].cpu().numpy()
                 if 'pred_regions' in prediction else None),
        class_names=list(segmentor.class_names))


def method_segmentors(methods: Sequence[str], clip_path: str = 'ViT-B/16',
                      device: Union[str, torch.device, None] = None,
                      precision: Optional[str] = None,
                      vfm_path: Union[str, nn.Module, None] = None,
                      sam_path: Union[str, nn.Module, None] = None,
                      **kwargs) -> Dict[str, SFPSegmentor]:
    """A segmentor per method with the settings of its model base (see
    :func:`sfp.apis.method_defaults`), on a two-class vocabulary with one template (the
    analysis reads image features only); ``kwargs`` go to every segmentor.  The methods
    that read a vision foundation model get ``vfm_path`` (default: their config's), those
    that read SAM ``sam_path`` (Trident), each loaded once and shared."""
    from .vfm import load_sam, load_vfm

    settings = dict(templates=['a photo of a {}.'], text_cache=False)
    settings.update(kwargs)
    towers: Dict[str, nn.Module] = {}
    built = {}
    for method in methods:
        extra = {}
        for key, default, given, load in (('vfm_path', method_vfm(method), vfm_path, load_vfm),
                                          ('sam_path', method_sam(method), sam_path, load_sam)):
            if default is None:
                continue
            tower = given if given is not None else default
            if not isinstance(tower, nn.Module):
                if str(tower) not in towers:
                    towers[str(tower)] = load(tower)
                tower = towers[str(tower)]
            extra[key] = tower
        built[method] = init_segmentor(clip_path, [['background'], ['object']], device=device,
                                       precision=precision, method=method,
                                       **settings, **extra)
    return built


@torch.no_grad()
def compare_last_block_attention(
        segmentors: Union[Mapping[str, SFPSegmentor], Sequence[str]],
        image_bgr: np.ndarray, crop: Optional[int] = 224, short_side: int = 336,
        regions: Optional[np.ndarray] = None, **kwargs) -> AttentionComparison:
    """Each method's last-block attention on the same crop (see
    :func:`last_block_attention`): the central ``crop`` of the image resized to
    ``short_side``.

    Args:
        segmentors: name -> segmentor, or method names (built by
            :func:`method_segmentors` with ``kwargs``: ``clip_path``, ``device`` ...).
        image_bgr: (H, W, 3) uint8 BGR image.
        regions: (H, W) integer region map of the image, for a method whose attention
            reads class-agnostic regions (CorrCLIP's: the smallest id unsegmented).
    """
    if not isinstance(segmentors, Mapping):
        segmentors = method_segmentors(list(segmentors), **kwargs)
    if not segmentors:
        raise ValueError('compare_last_block_attention needs at least one method')
    methods, prepared, grid = {}, None, None
    for name, segmentor in segmentors.items():
        prepared, x = _prepared_crop(segmentor, image_bgr, crop, short_side)
        walk = replace(segmentor.encoder.walk(x), regions=_prepared_regions(
            regions, image_bgr, crop, short_side))
        grid = walk.grid
        methods[name] = method_attention(segmentor.encoder, walk)
    return AttentionComparison(crop=_as_rgb(prepared), grid=grid, methods=methods)


@dataclass
class PatchNeighbourhood:
    """A query patch's neighbours in the patch graph of label propagation (LPOSS).

    Attributes:
        query: the query node (a logit cell of one window; nodes window by window).
        neighbours: (k,) its k nearest nodes by the VFM's features, itself first.
        similarities: (k,) their feature similarities, descending.
        weights: (k,) their edge weights ``max(s, 0)^gamma * exp(-sigma d^pix_dist_pow)``.
        positions: (N, 2) every node's centre (y, x) in input pixels.
    """

    query: int
    neighbours: torch.Tensor
    similarities: torch.Tensor
    weights: torch.Tensor
    positions: torch.Tensor


@torch.no_grad()
def patch_neighbourhood(segmentor: SFPSegmentor, image: torch.Tensor,
                        point: Tuple[float, float]) -> PatchNeighbourhood:
    """The kNN neighbourhood of the patch node nearest ``point`` (y, x, input pixels) of a
    (3, H, W) normalised image, in the graph the segmentor's patch-level ``propagation``
    builds (the first of the windows covering the point where several do)."""
    prop = segmentor.propagation
    if prop is None or not prop.patch:
        raise ValueError('the segmentor has no patch-level propagation (propagation=dict(...) '
                         'with a vfm_path, e.g. the lposs configs)')
    image = image.to(segmentor.query_features.device)
    maps = segmentor.slide_maps([image]) if segmentor.slide_crop else \
        segmentor.whole_maps([image])
    nodes = segmentor.patch_nodes(image, maps[0].logits)
    target = torch.tensor(point, dtype=nodes.positions.dtype, device=nodes.positions.device)
    query = int((nodes.positions - target).square().sum(dim=1).argmin())
    sims, idx = knn_search(nodes.features, prop.k, nodes.features[query:query + 1])
    distance = (nodes.positions[idx[0]] - nodes.positions[query]).square().sum(dim=1).sqrt()
    weights = sims[0].clamp(min=0) ** prop.gamma * torch.exp(
        -prop.sigma * distance ** prop.pix_dist_pow)
    return PatchNeighbourhood(query, idx[0], sims[0], weights, nodes.positions)
