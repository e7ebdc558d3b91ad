"""CorrCLIP (Zhang, Liu, Tang; ICCV 2025, arXiv 2411.10086), release
zdk258/CorrCLIP@103bc18 (the conference method, ``CorrCLIPv1/``).

CorrCLIP limits CLIP's patch correlations to the regions of a class-agnostic mask
generator.  Per crop: DINO ViT-B/8's last-block ``q + k`` gives the correlations on its
8-pixel grid (value reconstruction); the crop's regions with similar DINO features are
merged (DBSCAN); a patch attends only within its merged region, and an unsegmented patch
to any patch more similar than the crop's mean (scope reconstruction).  Three branches
share that attention's output grid: the main one (CLIP's last-block values), a spatial
one (the values of the mean of middle blocks) and a semantic one (one class token per
region, walking the blocks beside the image tokens while seeing only its region).  The
segmentor's map correction (:mod:`sfp.models.map_correction`) then gives every region its
majority label.  What each step computes, with the release's quirks, is in
``docs/methods/corrclip.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..clip.model import VisionTransformer
from ..masks import RegionMasks
from ..masks.sam2_generator import SAM2AutomaticMasks  # noqa: F401  (registers its generator)
from ..models.detectors import OutlierDetector
from ..models.encoder import BlockWalk, EncoderOutput, MethodEncoder, PartConfig
from ..registry import ENCODERS
from .proxyclip import values_on_grid, vfm_view

#: Merged regions get ids ``MERGED_ID_OFFSET + cluster`` (the release's constant; with a
#: padded crop its padding, 10000 too, joins cluster 0, as released).
MERGED_ID_OFFSET = 10000
#: Region ids are resized as float32, as the release does: they must be exact there.
LARGEST_REGION_ID = 2 ** 24


def default_num_spatial(num_blocks: int) -> int:
    """The release's spatial-branch depth: 5 / 12 / 28 blocks for 12 / 24 / 32-block
    towers, else all but the last four."""
    return {12: 5, 24: 12, 32: 28}.get(num_blocks, num_blocks - 4)


def nearest(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(B, H, W) integer maps -> (B, *size), PyTorch's legacy ``'nearest'`` on float32
    values as the release resizes its masks (ids stay exact below 2^24)."""
    resized = F.interpolate(maps[:, None].float(), size=size, mode='nearest')
    return resized[:, 0].to(maps.dtype)


def dbscan_components(distances: torch.Tensor, eps: float, min_samples: int) -> torch.Tensor:
    """scikit-learn's DBSCAN on a precomputed (K, K) distance matrix: (K,) int64 labels,
    -1 for noise (none with ``min_samples`` 1: then the connected components of
    ``distance <= eps``, numbered by their smallest member)."""
    # Imported here: scikit-learn takes a second to import, and only this needs it.
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(metric='precomputed', eps=eps, min_samples=min_samples).fit_predict(
        distances.detach().cpu().numpy())
    return torch.from_numpy(labels.astype(np.int64)).to(distances.device)


@dataclass
class RegionMerge:
    """Mask merging of one crop (the release's step before the scope).

    Attributes:
        merged: (I, J) the crop's region ids after merging.
        values: (K,) the sorted ids before merging (the first: unsegmented).
        distances: ((K-1), (K-1)) DBSCAN's distances between the segmented regions'
            mean features, or None when the crop has at most 2 ids (nothing merged).
        labels: (K-1,) DBSCAN's cluster of each segmented region, or None.
    """

    merged: torch.Tensor
    values: torch.Tensor
    distances: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None


def merge_regions(features: torch.Tensor, regions: torch.Tensor, eps: float,
                  min_samples: int) -> RegionMerge:
    """Merge the segmented regions of a crop whose mean DINO features are close.

    Args:
        features: (I*J, C) L2-normalised DINO features, row-major.
        regions: (I, J) region ids on DINO's grid; the smallest id is the unsegmented
            union (never merged).
        eps, min_samples: DBSCAN's, on the distances ``max(sim) - sim`` between the
            L2-normalised region means.
    Returns:
        The merge; region k >= 1 gets ``MERGED_ID_OFFSET + its cluster`` (a noise region
        keeps its id), region 0 keeps its id.  With at most 2 ids nothing changes.
    """
    values, inverse = torch.unique(regions, return_inverse=True)
    if len(values) <= 2:
        return RegionMerge(regions, values)
    flat = inverse.flatten()
    members = F.one_hot(flat, len(values)).to(features.dtype)  # (I*J, K)
    means = (members.t() @ features) / members.sum(dim=0)[:, None]
    means = F.normalize(means, dim=-1)[1:]
    similarity = means @ means.t()
    distances = similarity.max() - similarity
    labels = dbscan_components(distances, eps, min_samples)
    new_ids = torch.cat([values[:1], torch.where(labels >= 0, labels + MERGED_ID_OFFSET,
                                                 values[1:])])
    return RegionMerge(new_ids[inverse], values, distances, labels)


def scope_mask(similarity: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """The pairs CorrCLIP's attention keeps: (B, N, N) similarities of N patches and
    (B, N) merged region ids -> (B, N, N) bool.

    Two patches of one segmented region see each other; a pair with a patch in the
    unsegmented union (each crop's smallest id) is kept where its similarity is above the
    crop's mean similarity (over all N x N entries).
    """
    unsegmented = regions == regions.min(dim=1, keepdim=True).values  # (B, N)
    same = (regions[:, :, None] == regions[:, None, :]) & ~unsegmented[:, :, None]
    mean = similarity.mean(dim=(1, 2), keepdim=True)
    either = unsegmented[:, :, None] | unsegmented[:, None, :]
    return same | (either & (similarity > mean))


@dataclass
class CorrCLIPTrace:
    """One batch of crops' intermediate results (for inspection and the parity tests).

    Attributes:
        dino_features: (B, I*J, C) DINO's L2-normalised last-block q + k.
        grid_regions: (B, I, J) each crop's region ids on DINO's grid, before merging.
        merges: the :class:`RegionMerge` of each crop.
        similarity_mean: (B,) the mean DINO similarity of each crop.
        allowed: (B, I*J, I*J) the pairs the attention keeps.
        token_regions: (B, gh, gw) merged ids on CLIP's grid.
        num_region_tokens: region tokens of each crop.
        region_tokens: (B, R, C) the region tokens after the last block (before ln_post),
            R the most of any crop (the rest of a crop's rows is padding).
        branches: (B, 3, I*J, C) ``ln_post`` of the main, spatial and semantic branches.
    """

    dino_features: torch.Tensor
    grid_regions: torch.Tensor
    merges: List[RegionMerge]
    similarity_mean: torch.Tensor
    allowed: torch.Tensor
    token_regions: torch.Tensor
    num_region_tokens: List[int]
    region_tokens: torch.Tensor
    branches: torch.Tensor


@ENCODERS.register_module(name=['CorrCLIPEncoder', 'corrclip'])
class CorrCLIPEncoder(MethodEncoder):
    """CorrCLIP's image encoder: CLIP's last block rebuilt on DINO's correlations within
    class-agnostic regions, plus a spatial and a semantic branch.

    Each crop comes with its region map (``regions``: the crop's pixels' ids; the
    smallest id of a crop is its unsegmented union).  The features sit on DINO's grid
    (``logit_stride`` = its patch: 42 x 42 for a 336 crop).

    Args:
        visual: the CLIP ViT image tower.
        vfm: DINO (:class:`sfp.vfm.VFMTower`; the release's ViT-B/8).
        alpha: weight of the spatial branch (the release's ALPHA).
        beta: weight of the semantic branch (BETA).
        tau: temperature of the attention (TAU).
        num_spatial: the spatial branch averages the outputs of this many blocks before
            the last two (None: :func:`default_num_spatial`).
        dbscan_eps, dbscan_min_samples: DBSCAN's settings for mask merging.
        pad_mask_value: the id a padded crop's padding gets (see
            ``SFPSegmentor.pad_crops``; the release pads to multiples of 56).
        detector, mitigation, detect_block, stream_mitigation_blocks: purification (see
            :class:`~sfp.models.encoder.MethodEncoder`); the release has none.
    """

    uses_vfm = True
    uses_masks = True

    def __init__(self,
                 visual: VisionTransformer,
                 vfm: nn.Module,
                 alpha: float = 1.0,
                 beta: float = 0.5,
                 tau: float = 4.0,
                 num_spatial: Optional[int] = None,
                 dbscan_eps: float = 0.2,
                 dbscan_min_samples: int = 1,
                 pad_mask_value: int = 10000,
                 detector: Union[OutlierDetector, str, dict, None] = None,
                 mitigation: PartConfig = None,
                 detect_block: Optional[int] = None,
                 stream_mitigation_blocks: Sequence[int] = ()):
        depth = visual.num_blocks
        num_spatial = default_num_spatial(depth) if num_spatial is None else num_spatial
        if not 1 <= num_spatial <= depth - 2:
            raise ValueError(f'num_spatial = {num_spatial}: the spatial branch averages 1 to '
                             f'{depth - 2} blocks before the last two of this {depth}-block '
                             f'ViT')
        if tau <= 0 or dbscan_eps <= 0 or dbscan_min_samples < 1:
            raise ValueError(f'CorrCLIP needs tau > 0, dbscan_eps > 0 and dbscan_min_samples '
                             f'>= 1; got tau={tau}, dbscan_eps={dbscan_eps}, '
                             f'dbscan_min_samples={dbscan_min_samples}')
        # Blocks are counted from 1 here: the release's 0-based L-2-n .. L-3 are the outputs
        # of blocks L-1-n .. L-2; every block's input feeds the region tokens.
        super().__init__(visual, detector, mitigation, detect_block, stream_mitigation_blocks,
                         kept_blocks=range(1, depth - 1),
                         summed_blocks=(depth - 1 - num_spatial, depth - 2))
        self.vfm = vfm
        self.alpha = alpha
        self.beta = beta
        self.tau = tau
        self.num_spatial = num_spatial
        self.dbscan_eps = dbscan_eps
        self.dbscan_min_samples = dbscan_min_samples
        self.pad_mask_value = pad_mask_value

    @property
    def logit_stride(self) -> int:
        return self.vfm.patch_size

    def working_set(self, height: int, width: int) -> int:
        """CLIP's walk and kept block outputs, DINO's blocks (attention materialised), and
        the N' x N' similarity, mask and weights on DINO's grid."""
        rows, cols = self.vfm.grid_size(height, width)
        n = rows * cols + self.vfm.num_prefix_tokens
        vfm = n * self.vfm.width * 12 + 2 * self.vfm.num_heads * n * n
        clip_rows, clip_cols = self.visual.grid_size(height, width)
        kept = self.visual.num_blocks * (clip_rows * clip_cols + 1) * self.visual.width
        return super().working_set(height, width) + vfm + kept + 5 * n * n

    # -- DINO and the regions ---------------------------------------------------------
    def dino_features(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, 3, H, W) CLIP-normalised crops -> DINO's last-block ``q + k`` (all heads,
        head-major), prefix tokens dropped, L2-normalised (eps 1e-12): (B, I*J, C); and
        DINO's grid (I, J)."""
        tokens = self.vfm.embed(vfm_view(images, self.vfm.mean, self.vfm.std))
        for block in self.vfm.blocks[:-1]:
            tokens = block(tokens)
        last = self.vfm.blocks[-1]
        q, k, _ = last.attn.project_qkv(last.norm1(tokens))  # (B, h, P + N, d), q unscaled
        qk = (q + k)[:, :, self.vfm.num_prefix_tokens:]
        b, heads, n, d = qk.shape
        features = qk.transpose(1, 2).reshape(b, n, heads * d)
        return F.normalize(features, dim=-1), self.vfm.grid_size(*images.shape[-2:])

    def crop_regions(self, regions: Union[torch.Tensor, Sequence[RegionMasks]],
                     size: Tuple[int, int]) -> torch.Tensor:
        """The crops' region ids, (B, h, w) or one :class:`~sfp.masks.RegionMasks` per
        crop (its label map), at their (h, w) pixels -> (B, *size) int64, padded centred
        with ``pad_mask_value`` where the crops were padded to ``size``."""
        if not torch.is_tensor(regions):
            regions = torch.stack([r.label_map() if isinstance(r, RegionMasks) else r
                                   for r in regions])
        if regions.dim() != 3 or regions.is_floating_point():
            raise ValueError(f'CorrCLIP needs each crop\'s integer region map, (B, h, w); got '
                             f'{regions.dtype} {tuple(regions.shape)}')
        if regions.numel() and regions.abs().max() >= LARGEST_REGION_ID:
            raise ValueError(f'region ids must be below 2^24 in magnitude (they are resized '
                             f'as float32, as released); got {regions.abs().max().item()}')
        height, width = regions.shape[-2:]
        pad_h, pad_w = size[0] - height, size[1] - width
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f'region maps of {height} x {width} for crops of '
                             f'{size[0]} x {size[1]}: they must be the crops\' size')
        if pad_h or pad_w:
            regions = F.pad(regions, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2,
                                      pad_h - pad_h // 2), value=self.pad_mask_value)
        return regions.long()

    def scope(self, images: torch.Tensor, regions: Union[torch.Tensor, Sequence[RegionMasks]]
              ) -> Tuple[torch.Tensor, Tuple[int, int], torch.Tensor, List[RegionMerge],
                         torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 1-4 of a batch of crops: DINO's features (B, I*J, C), its grid (I, J), the
        regions on it (B, I, J), each crop's merge, the attention (B, I*J, I*J), the kept
        pairs and the mean similarities."""
        regions = self.crop_regions(regions, tuple(images.shape[-2:])).to(images.device)
        features, grid = self.dino_features(images)
        grid_regions = nearest(regions, grid)
        merges = [merge_regions(f, r, self.dbscan_eps, self.dbscan_min_samples)
                  for f, r in zip(features, grid_regions)]
        merged = torch.stack([m.merged for m in merges]).flatten(1)
        return (features, grid, grid_regions, merges) + self.attention(features, merged)

    def attention(self, features: torch.Tensor, merged: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, C) DINO features and (B, N) merged ids -> the attention (B, N, N)
        ``softmax(tau * S)`` over the kept pairs (:func:`scope_mask`), the kept pairs
        and the mean similarity (B,)."""
        similarity = features @ features.transpose(1, 2)
        allowed = scope_mask(similarity, merged)
        scores = (self.tau * similarity).masked_fill(~allowed, float('-inf'))
        return torch.softmax(scores, dim=-1), allowed, similarity.mean(dim=(1, 2))

    # -- the semantic branch ----------------------------------------------------------
    def region_tokens(self, walk: BlockWalk, token_regions: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
        """One class token per region of each crop, walking every block beside the image
        tokens: it attends to the CLS token and its region's patches (not to itself);
        nobody attends to it, so the image tokens are the walk's.

        Args:
            walk: the walk (``outputs`` holds every block's output but the last).
            token_regions: (B, gh, gw) merged ids on CLIP's grid.
        Returns:
            (B, R, C) the tokens after the last block, R the most regions of any crop (a
            crop's extra rows are padding); (B, gh*gw) the region index of every patch;
            each crop's region count.
        """
        flat = token_regions.flatten(1)
        index = torch.empty_like(flat)
        counts = []
        for b in range(len(flat)):
            values, index[b] = torch.unique(flat[b], return_inverse=True)
            counts.append(len(values))
        patches = index[:, None, :] == torch.arange(max(counts), device=flat.device)[:, None]
        cls = torch.ones_like(patches[:, :, :1])
        allowed = torch.cat([cls, patches], dim=2)[:, None]  # (B, 1, R, 1 + gh*gw)
        first = self.visual.embed(walk.images)
        inputs = [first] + [walk.outputs[i] for i in range(1, self.visual.num_blocks - 1)]
        inputs.append(walk.tokens)
        tokens = first[:, :1].expand(-1, max(counts), -1)
        for block, x in zip(self.visual.blocks, inputs):
            q = block.attn.project_qkv(block.ln_1(tokens))[0]
            _, k, v = block.attn.project_qkv(block.ln_1(x))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            tokens = tokens + block.attn.merge_heads(attended)
            tokens = tokens + block.mlp(block.ln_2(tokens))
        return tokens, index, counts

    def branches(self, walk: BlockWalk, attention: torch.Tensor, grid: Tuple[int, int],
                 region_tokens: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
        """``ln_post`` of the three branches on DINO's (I, J) grid: (B, 3, I*J, C).

        Main: ``out_proj(A v)`` of the walked tokens' last-block values, resized to the
        grid; spatial: the same on the mean of the ``num_spatial`` summed blocks;
        semantic: every position takes its region's token (the region map nearest-resized
        from CLIP's grid)."""
        block = self.last_block
        spatial = walk.summed / self.num_spatial
        main, spatial = (block.attn.out_proj(attention @ values_on_grid(block, x, walk.grid,
                                                                         grid))
                         for x in (walk.tokens, spatial))
        index = nearest(token_index.view(-1, *walk.grid), grid).flatten(1)  # (B, I*J)
        semantic = torch.gather(region_tokens, 1,
                                index[..., None].expand(-1, -1, region_tokens.shape[-1]))
        return self.visual.ln_post(torch.stack([main, spatial, semantic], dim=1))

    # -- the whole crop -----------------------------------------------------------------
    def forward_with_trace(self, images: torch.Tensor,
                           regions: Union[torch.Tensor, Sequence[RegionMasks]]
                           ) -> Tuple[EncoderOutput, CorrCLIPTrace]:
        """:meth:`forward` and its :class:`CorrCLIPTrace`."""
        features, grid, grid_regions, merges, attention, allowed, mean = \
            self.scope(images, regions)
        walk = self.walk(images)
        token_regions = nearest(torch.stack([m.merged for m in merges]), walk.grid)
        tokens, token_index, counts = self.region_tokens(walk, token_regions)
        branches = self.branches(walk, attention.to(walk.tokens.dtype), grid, tokens,
                                 token_index)
        weights = torch.tensor([1.0, self.alpha, self.beta], dtype=branches.dtype,
                               device=branches.device).view(1, 3, 1, 1)
        out = (branches * weights).sum(dim=1) @ self.visual.proj
        trace = CorrCLIPTrace(features, grid_regions, merges, mean, allowed, token_regions,
                              counts, tokens, branches)
        return EncoderOutput(out, walk.outliers, grid), trace

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """CorrCLIP's attention as one head (B, 1, I*J, I*J), on DINO's grid; it depends on
        the crops' regions (``walk.regions``)."""
        if walk.regions is None:
            raise ValueError("CorrCLIP's attention depends on each crop's regions: give the "
                             'walk the crops\' regions (walk.regions; the analysis functions '
                             'take regions=)')
        return self.scope(walk.images, walk.regions)[4][:, None], \
            self.vfm.grid_size(*walk.images.shape[-2:])

    def forward(self, images: torch.Tensor, contexts: Optional[Sequence[Any]] = None,
                regions: Union[torch.Tensor, Sequence[RegionMasks], None] = None
                ) -> EncoderOutput:
        """Encode (B, 3, H, W) CLIP-normalised crops with their regions (see
        :meth:`crop_regions`)."""
        if regions is None:
            raise ValueError('CorrCLIP needs the regions of every crop: give the segmentor '
                             'a mask source (masks: a folder of mask files or a generator)')
        return self.forward_with_trace(images, regions)[0]
