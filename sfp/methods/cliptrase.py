"""CLIPtrase (Shao et al., ECCV 2024), release leaves162/CLIPtrase@2b7de61."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..clip.model import ResidualAttentionBlock, VisionTransformer
from ..models.encoder import (
    BlockWalk,
    EncoderOutput,
    LastBlockAttentionEncoder,
    PartConfig,
    build_part,
)
from ..models.inference import patch_logits
from ..models.regions import CorrelationRegions, vote_in_regions
from ..registry import ENCODERS


def self_correlation(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(cos(q_i, q_j) + cos(k_i, k_j) + cos(v_i, v_j)) / 3, averaged over heads.

    q, k, v: (B, heads, T, d) projections of one block -> (B, T, T).
    """
    def cosine(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=-1, eps=1e-8)
        return x @ x.transpose(-2, -1)

    return ((cosine(q) + cosine(k) + cosine(v)) / 3).mean(dim=1)


def self_self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(s q q^T) + softmax(s k k^T) + softmax(s v v^T), s = head_dim^-0.5.

    q, k, v: (B, heads, T, d) -> (B, heads, T, T) weights (rows sum to 3).
    """
    scale = q.shape[-1] ** -0.5
    return sum(torch.softmax((x * scale) @ x.transpose(-2, -1), dim=-1) for x in (q, k, v))


@ENCODERS.register_module(name=['CLIPtraseEncoder', 'cliptrase'])
class CLIPtraseEncoder(LastBlockAttentionEncoder):
    """Self-correlation recalibration and a vote within patch clusters.

    - Last block: attention softmax(s q q^T) + softmax(s k k^T) + softmax(s v v^T) per
      head (s = head_dim^-0.5; rows sum to 3), then out_proj, the residual and the MLP.
    - Logits: cosine of the patch features with the query features; with
      ``cls_logit_product`` (the release's VOC20) each query's map is multiplied by the
      cosine of the CLS feature with that query.
    - Regions: the correlation M of block L-1 (:func:`self_correlation` of its q, k, v),
      a[i, j] = max(0, M[i, j] - M[CLS, j]) over patches, clustered into regions by
      ``regions`` (:class:`~sfp.models.regions.CorrelationRegions`).
    - Vote: each crop's label map (its logits upsampled bilinearly to its pixels, the
      argmax over queries, the query's class) takes in every region the label most of
      the region's pixels have (ties: ``background_class`` last, else the lowest id);
      without any cluster the label map stays as it is.  The labels are the encoder's
      ``EncoderOutput.labels``; the segmentor's ``predict`` counts them over windows.

    Purification (``detector``) acts on block L-1's output, so on the last block, the
    features and the logits; M comes from inside block L-1 and is unchanged by it.

    Args:
        query_features: (Q, D) L2-normalised query features (passed by the segmentor).
        query_idx: (Q,) class of each query (passed by the segmentor).
        dbscan_eps, dbscan_min_samples: DBSCAN's radius and core count (the release's
            224 px setting: 0.7 and 3; its 336 px setting: 1.1 and 7).
        median_size, upsample_ratio: see :class:`~sfp.models.regions.CorrelationRegions`.
        regions: the region part (a module or config dict) instead of one built from the
            four settings above.
        cls_logit_product: multiply the logits by the CLS logits (the release's VOC20).
        background_class: the class that loses ties in the vote (the release numbers its
            background after every object); None: ties go to the lowest class id.
        vote: False skips the clusters and the vote: the labels are the logits' argmax
            (the ablation "without the cluster step").
        **kwargs: :class:`~sfp.models.encoder.MethodEncoder` arguments (purification).
    """

    keep_residual = True
    uses_vocabulary = True

    def __init__(self, visual: VisionTransformer, query_features: torch.Tensor,
                 query_idx: torch.Tensor, dbscan_eps: float = 0.7, dbscan_min_samples: int = 3,
                 median_size: int = 7, upsample_ratio: int = 4, regions: PartConfig = None,
                 cls_logit_product: bool = False, background_class: Optional[int] = None,
                 vote: bool = True, **kwargs):
        if visual.num_blocks < 3:
            raise ValueError(f'CLIPtrase reads the input of block L-1: it needs a ViT of at '
                             f'least 3 blocks, got {visual.num_blocks}')
        # Block L-2's output is block L-1's input, whose q, k, v give the correlation.
        super().__init__(visual, kept_blocks=(visual.num_blocks - 2,), **kwargs)
        self.register_buffer('query_features', query_features, persistent=False)
        self.register_buffer('query_idx', query_idx, persistent=False)
        self.num_classes = int(query_idx.max()) + 1
        if background_class is not None and not 0 <= background_class < self.num_classes:
            raise ValueError(f'background_class = {background_class}: the vocabulary has '
                             f'classes 0 to {self.num_classes - 1}')
        order = [c for c in range(self.num_classes) if c != background_class]
        if background_class is not None:
            order.append(background_class)
        self.register_buffer('tie_priority', torch.tensor(order), persistent=False)
        self.background_class = background_class
        self.regions = build_part(regions, CorrelationRegions) or CorrelationRegions(
            dbscan_eps, dbscan_min_samples, median_size, upsample_ratio)
        self.cls_logit_product = cls_logit_product
        self.decides_labels = vote

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The last block's weights (B, heads, 1 + N, 1 + N): its v-v term reads the values,
        so they cannot be read by running :meth:`attention` on identity values."""
        block = self.last_block
        return self_self_attention(*block.attn.project_qkv(block.ln_1(walk.tokens))), walk.grid

    def attention(self, block: ResidualAttentionBlock, hidden: torch.Tensor,
                  grid: Tuple[int, int]) -> torch.Tensor:
        q, k, v = block.attn.project_qkv(hidden)
        return self_self_attention(q, k, v) @ v

    def correlation(self, walk: BlockWalk) -> torch.Tensor:
        """(B, N, N) patch correlation a of block L-1 (see the class doc)."""
        block = self.visual.blocks[self.visual.num_blocks - 2]
        inputs = walk.outputs[self.visual.num_blocks - 2]
        m = self_correlation(*block.attn.project_qkv(block.ln_1(inputs)))  # (B, T, T)
        return (m[:, 1:, 1:] - m[:, :1, 1:]).clamp(min=0)

    def tokens(self, walk: BlockWalk) -> torch.Tensor:
        """(B, 1 + N, D) every token after the last block, projected (CLS first)."""
        return self.visual.project(self.block_output(walk))

    def crop_labels(self, logits: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """(Q, rows, cols) logits of a crop -> (H, W) class of each of its pixels."""
        dense = F.interpolate(logits[None], size=size, mode='bilinear', align_corners=False)
        return self.query_idx[dense[0].argmax(dim=0)]

    def vote(self, logits: torch.Tensor, correlation: torch.Tensor, grid: Tuple[int, int],
             size: Tuple[int, int]) -> torch.Tensor:
        """(B, Q, rows, cols) logits and (B, N, N) correlations of crops of ``size`` ->
        (B, H, W) labels voted within each crop's regions (in at least float32)."""
        dtype = torch.promote_types(logits.dtype, torch.float32)
        voted = []
        for crop_logits, crop_correlation in zip(logits.to(dtype), correlation.to(dtype)):
            labels = self.crop_labels(crop_logits, size)
            regions = self.regions(crop_correlation, grid, size)
            voted.append(labels if regions is None else
                         vote_in_regions(labels, regions, self.num_classes, self.tie_priority))
        return torch.stack(voted)

    def working_set(self, height: int, width: int) -> int:
        """The base estimate plus block L-1's three cosine matrices per head."""
        rows, cols = self.visual.grid_size(height, width)
        n = rows * cols + 1
        return super().working_set(height, width) + 3 * self.visual.heads * n * n

    def forward(self, images: torch.Tensor,
                contexts: Optional[Sequence[Any]] = None) -> EncoderOutput:
        walk = self.walk(images)
        tokens = self.tokens(walk)
        features = tokens[:, 1:]
        logits = patch_logits(features, self.query_features, walk.grid)  # (B, Q, rows, cols)
        if self.cls_logit_product:
            cls_logits = F.normalize(tokens[:, 0], dim=-1) @ self.query_features.t()  # (B, Q)
            logits = logits * cls_logits[:, :, None, None]
        labels = None
        if self.decides_labels:
            labels = self.vote(logits, self.correlation(walk), walk.grid,
                               tuple(images.shape[-2:]))
        return EncoderOutput(features, walk.outliers, walk.grid, logits=logits, labels=labels)
