"""CASS (Kim et al., CVPR 2025, arXiv 2411.17150), release MICV-yonsei/CASS@228ecdd.

CASS reads DINO's last-block keys beside CLIP.  Per crop: DINO's key graph of each head is
matched to a CLIP head by their eigenvalue spectra, reduced to a rank-10 approximation and
blended into that CLIP head's key graph; the blend, plus NACLIP's Gaussian window, is the
attention of a reduced last block (no residual, no FFN).  The text side is adjusted per
crop: within each cluster of the vocabulary, the query closest to the image's global
vector moves towards its two best-matching patches, and the logits mix in the global
vector's similarity.  What each step computes, with the release's quirks, is in
``docs/methods/cass.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform
from torch import nn

from ..clip.model import VisionTransformer
from ..models.encoder import BlockWalk, EncoderOutput, MethodEncoder
from ..registry import ENCODERS
from .naclip import neighbourhood_bias

#: The release undoes ImageNet's normalisation on CLIP's input with this std, a typo for
#: (0.229, 0.224, 0.225): DINO sees a colour-shifted picture.  Kept, as released.
RELEASE_INVERSE_STD = (0.229, 0.224, 0.255)
RELEASE_INVERSE_MEAN = (0.485, 0.456, 0.406)
#: Share of the singular values' sum the release's rank rule aims at; the rank it finds is
#: discarded (rank ``rank`` is always used), so it is only reported.
ENERGY_SHARE = 0.95
SVD_MODES = ('lowrank', 'exact')
GLOBAL_VECTORS = ('image', 'crop')


@dataclass
class CASSImageContext:
    """What CASS takes from a whole image before its crops.

    Attributes:
        generator: the image's random generator (CPU, seeded once per image); the crops'
            randomised SVDs draw from it in crop order, then head order.
        global_vector: (D,) the whole image's CLIP embedding (its CLS through the full last
            block), or None: each crop's own.
    """

    generator: torch.Generator
    global_vector: Optional[torch.Tensor]


@dataclass
class CASSTrace:
    """One crop's intermediate results (for inspection and the parity tests).

    Attributes:
        dino_image: (3, S, S) uint8 RGB picture DINO was run on.
        dino_eigs, clip_eigs: (H, k) top eigenvalues of each head's key graph, descending.
        head_cost: (H, H) 1 - spectral distance, rows DINO heads, columns CLIP heads.
        head_match: (H,) DINO head blended into each CLIP head.
        head_weight: (H,) weight of that DINO graph in the blend.
        energy_rank: (H,) the release's 95%-energy rank (computed, then not used).
        rank_used: (H,) rank of the low-rank DINO graph.
        singular_values: (H, rank) before rescaling.
        global_sim: (Q,) cosine of the global vector with the queries.
        adjusted_text: (Q, D) the crop's query features after the cluster adjustment.
    """

    dino_image: torch.Tensor
    dino_eigs: torch.Tensor
    clip_eigs: torch.Tensor
    head_cost: torch.Tensor
    head_match: torch.Tensor
    head_weight: torch.Tensor
    energy_rank: torch.Tensor
    rank_used: torch.Tensor
    singular_values: torch.Tensor
    global_sim: torch.Tensor
    adjusted_text: torch.Tensor


def text_clusters(query_features: torch.Tensor, threshold: float) -> torch.Tensor:
    """(Q,) cluster id (0..C-1) of each query: Ward linkage on scikit-learn's cosine
    distances, as the release computes them, cut at ``threshold`` (scipy's ``fcluster``
    with ``criterion='distance'``)."""
    from sklearn.metrics.pairwise import cosine_distances  # imported when used: heavy

    x = query_features.detach().double().cpu().numpy()
    if len(x) < 2:
        return torch.zeros(len(x), dtype=torch.long)
    distances = cosine_distances(x)
    tree = linkage(squareform(distances, checks=False), method='ward')
    return torch.from_numpy(fcluster(tree, t=threshold, criterion='distance') - 1).long()


def release_dino_pictures(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) CLIP-normalised crops -> (B, 3, S, S) uint8 RGB pictures, S = min(h, w),
    made as the release makes DINO's input: ImageNet's normalisation undone with the typo'd
    std (:data:`RELEASE_INVERSE_STD`), x 255, truncated to uint8 (clamped to 0..255 first,
    which real images never reach), squashed to S x S by PIL's bicubic resize."""
    mean = torch.tensor([-m / s for m, s in zip(RELEASE_INVERSE_MEAN, RELEASE_INVERSE_STD)],
                        dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor([1 / s for s in RELEASE_INVERSE_STD], dtype=torch.float64).view(3, 1, 1)
    side = min(images.shape[-2:])
    pictures = []
    for image in images.detach().to('cpu', torch.float64):
        rgb = ((image - mean) / std * 255).clamp(0, 255).to(torch.uint8)
        picture = Image.fromarray(rgb.permute(1, 2, 0).numpy(), mode='RGB')
        picture = picture.resize((side, side), Image.Resampling.BICUBIC)
        pictures.append(torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1))
    return torch.stack(pictures)


def spectral_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(H1, k), (H2, k) spectra -> (H1, H2) 1-Wasserstein distance between them as
    distributions: each spectrum L2-normalised, then divided by its absolute sum, sorted;
    the distance is the sum of absolute differences."""
    def as_distribution(spectra):
        return F.normalize(F.normalize(spectra, p=2, dim=-1), p=1, dim=-1).sort(dim=-1)[0]

    a, b = as_distribution(first), as_distribution(second)
    return (a[:, None] - b[None]).abs().sum(-1)


def top_eigenvalues(graphs: torch.Tensor, count: int) -> torch.Tensor:
    """(H, N, N) symmetric graphs -> (H, min(count, N)) largest eigenvalues, descending
    (float64)."""
    values = torch.linalg.eigvalsh(graphs.double()).flip(-1)
    return values[:, :count]


def randomised_svd(matrix: torch.Tensor, rank: int, niter: int,
                   generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.svd_lowrank(matrix, q=rank, niter=niter)`` of a square matrix as torch 2.13
    computes it, with the random test matrix drawn from ``generator`` (on the CPU, in
    float64) instead of the global one: U (N, q), S (q,), V (N, q)."""
    test = torch.randn(matrix.shape[-1], rank, dtype=matrix.dtype, generator=generator)
    basis = torch.linalg.qr(matrix @ test.to(matrix.device)).Q
    for _ in range(niter):
        basis = torch.linalg.qr(matrix.mH @ basis).Q
        basis = torch.linalg.qr(matrix @ basis).Q
    u, s, vh = torch.linalg.svd(basis.mH @ matrix, full_matrices=False)
    return basis @ u, s, vh.mH


def exact_svd(matrix: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact SVD truncated to ``rank``: U (N, q), S (q,), V (N, q)."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank].mH


def energy_rank(singular_values: torch.Tensor, share: float = ENERGY_SHARE) -> int:
    """The release's rank rule: the fewest leading values holding ``share`` of their sum."""
    cumulative = torch.cumsum(singular_values, 0) / singular_values.sum()
    return int(torch.searchsorted(cumulative, torch.tensor([share], dtype=cumulative.dtype,
                                                            device=cumulative.device))) + 1


def rescale_to(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Affine map of x's range [min x, max x] onto [low, high]."""
    return (x - x.min()) / (x.max() - x.min()) * (high - low) + low


@ENCODERS.register_module(name=['CASSEncoder', 'cass'])
class CASSEncoder(MethodEncoder):
    """CLIP's last block with DINO's spectrally matched, low-rank key graphs, and
    cluster-adjusted text (CASS).  See the module doc and ``docs/methods/cass.md``.

    Args:
        visual: CLIP's image tower.
        vfm: the DINO tower (:class:`sfp.vfm.VFMTower`) with as many heads, of the same
            width, as CLIP's.
        query_features: (Q, D) L2-normalised query features; query_idx: (Q,) class of each.
        global_semantics_weight: gamma, the share of the global vector's similarity in the
            logits.
        mean_vector_weight: beta, how far a cluster's chosen query moves to its patches.
        cluster_threshold: Ward-linkage cut of the text clusters (the release's
            ``h_threshold``).
        global_vector: 'image': the whole image's embedding (the release in sliding mode);
            'crop': each crop's own CLS (its whole-image mode, and Cityscapes).
        rescale_singular_values: stretch the singular values to [0.5 min, 1.5 max] (all
            benchmarks but VOC20 and Cityscapes).
        svd: 'lowrank': the release's randomised SVD, each image's draws from a CPU
            generator seeded with ``seed`` (so results do not depend on batching);
            'exact': a deterministic truncated SVD.
        rank, svd_niter: rank of the DINO graph, subspace iterations of the randomised SVD.
        seed: see ``svd``.
        gaussian_std: NACLIP's Gaussian window (patches).
        spectrum_size: eigenvalues compared per head.
        dino_weight_scale: the blend weight of a DINO graph is this times its head weight.
        topk_patches: patches averaged into a cluster's query.
        **kwargs: :class:`MethodEncoder` arguments (purification).
    """

    uses_vocabulary = True
    uses_vfm = True

    def __init__(self, visual: VisionTransformer, vfm: nn.Module,
                 query_features: torch.Tensor, query_idx: torch.Tensor,
                 global_semantics_weight: float = 0.0, mean_vector_weight: float = 0.0,
                 cluster_threshold: float = 0.0, global_vector: str = 'image',
                 rescale_singular_values: bool = True, svd: str = 'lowrank', rank: int = 10,
                 svd_niter: int = 2, seed: int = 42, gaussian_std: float = 5.0,
                 spectrum_size: int = 20, dino_weight_scale: float = 10.0,
                 topk_patches: int = 2, **kwargs):
        super().__init__(visual, **kwargs)
        if svd not in SVD_MODES:
            raise ValueError(f'svd must be one of {", ".join(SVD_MODES)}, got {svd!r}')
        if global_vector not in GLOBAL_VECTORS:
            raise ValueError(f'global_vector must be one of {", ".join(GLOBAL_VECTORS)}, '
                             f'got {global_vector!r}')
        heads, head_dim = visual.heads, visual.width // visual.heads
        vfm_head_dim = vfm.width // vfm.num_heads
        if (vfm.num_heads, vfm_head_dim) != (heads, head_dim):
            raise ValueError(f'CASS blends each VFM head into a CLIP head: the VFM has '
                             f'{vfm.num_heads} heads of {vfm_head_dim} channels, CLIP '
                             f'{heads} of {head_dim}; use a VFM of CLIP\'s head layout '
                             f'(dino_vitb8 or dino_vitb16 with ViT-B CLIP)')
        self.vfm = vfm
        self.global_semantics_weight = global_semantics_weight
        self.mean_vector_weight = mean_vector_weight
        self.cluster_threshold = cluster_threshold
        self.global_vector = global_vector
        self.rescale_singular_values = rescale_singular_values
        self.svd = svd
        self.rank = rank
        self.svd_niter = svd_niter
        self.seed = seed
        self.gaussian_std = gaussian_std
        self.spectrum_size = spectrum_size
        self.dino_weight_scale = dino_weight_scale
        self.topk_patches = topk_patches
        self.register_buffer('query_features', query_features, persistent=False)
        self.register_buffer('query_idx', query_idx, persistent=False)
        self.register_buffer('cluster_ids', text_clusters(query_features, cluster_threshold),
                             persistent=False)

    # -- per image -----------------------------------------------------------------------
    def image_context(self, image: torch.Tensor) -> CASSImageContext:
        global_vector = None
        if self.global_vector == 'image':
            global_vector = self.global_embedding(self.walk(image[None]).tokens)[0]
        return CASSImageContext(torch.Generator().manual_seed(self.seed), global_vector)

    def global_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, C) last-block inputs -> (B, D) CLIP embeddings: CLS through the full
        last block, ln_post and the projection."""
        return self.visual.project(self.last_block(tokens)[:, 0])

    def working_set(self, height: int, width: int) -> int:
        rows, cols = self.visual.grid_size(height, width)
        n = rows * cols
        side = min(height, width) // self.vfm.patch_size
        n_vfm = side * side + 1
        vfm = n_vfm * self.vfm.width * 12 + 2 * self.vfm.num_heads * n_vfm * n_vfm
        # Key graphs of both towers, the blend and its softmax; float64 spectra and SVDs.
        graphs = self.visual.heads * n * n * 12
        return super().working_set(height, width) + vfm + graphs

    # -- the VFM side --------------------------------------------------------------------
    def vfm_keys(self, images: torch.Tensor, grid: Tuple[int, int]) -> Tuple[torch.Tensor,
                                                                              torch.Tensor]:
        """DINO's last-block keys of each crop's picture (:func:`release_dino_pictures`),
        CLS dropped, bilinearly resized to CLIP's patch grid: (B, H, N, d); and the
        pictures."""
        pictures = release_dino_pictures(images)
        x = pictures.to(images.device, torch.float64) / 255
        mean = torch.tensor(self.vfm.mean, dtype=torch.float64, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.vfm.std, dtype=torch.float64, device=x.device).view(3, 1, 1)
        x = (x - mean) / std
        patch = self.vfm.patch_size
        side = x.shape[-1] - x.shape[-1] % patch
        x = x[..., :side, :side].to(next(self.vfm.parameters()).dtype)
        tokens = self.vfm.embed(x)
        for block in self.vfm.blocks[:-1]:
            tokens = block(tokens)
        last = self.vfm.blocks[-1]
        _, keys, _ = last.attn.project_qkv(last.norm1(tokens))  # (B, H, P + n, d)
        keys = keys[:, :, self.vfm.num_prefix_tokens:]
        b, h, _, d = keys.shape
        rows, cols = self.vfm.grid_size(side, side)
        keys = keys.transpose(-2, -1).reshape(b * h, d, rows, cols)
        keys = F.interpolate(keys, size=grid, mode='bilinear', align_corners=False)
        return keys.reshape(b, h, d, -1).transpose(-2, -1), pictures

    # -- the attention -------------------------------------------------------------------
    def low_rank_graph(self, graph: torch.Tensor,
                       generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """A DINO key graph (N, N) -> its rank-``rank`` approximation (float64, diagonal
        zeroed) and its singular values (before rescaling)."""
        matrix = graph.double()
        rank = min(self.rank, matrix.shape[-1])
        if self.svd == 'lowrank':
            u, s, v = randomised_svd(matrix, rank, self.svd_niter, generator)
        else:
            u, s, v = exact_svd(matrix, rank)
        scaled = s
        if self.rescale_singular_values:
            scaled = rescale_to(s, 0.5 * s.min(), 1.5 * s.max())
        approx = u @ torch.diag(scaled) @ v.T
        approx.fill_diagonal_(0)
        return approx, s

    def blended_graphs(self, keys: torch.Tensor, vfm_keys: torch.Tensor,
                       generator: torch.Generator) -> Tuple[torch.Tensor, dict]:
        """One crop's attention logits before the window: (H, N, d) CLIP keys and DINO keys
        -> (H, N, N), each CLIP head's k-k graph blended with the low-rank graph of its
        matched DINO head; and what the matching found."""
        scale = keys.shape[-1] ** -0.5
        vfm_keys = rescale_to(vfm_keys, keys.min(), keys.max())
        clip_graphs = keys @ keys.transpose(-2, -1) * scale
        dino_graphs = vfm_keys @ vfm_keys.transpose(-2, -1) * scale
        dino_eigs = top_eigenvalues(dino_graphs, self.spectrum_size)
        clip_eigs = top_eigenvalues(clip_graphs, self.spectrum_size)
        cost = 1 - spectral_distance(dino_eigs, clip_eigs)  # rows DINO, columns CLIP
        match = torch.from_numpy(linear_sum_assignment(cost.cpu().numpy())[1]).long()
        blended, weights, singular, ranks = [], [], [], []
        for head, source in enumerate(match.tolist()):
            # The release weighs DINO head `source` by cost[head, source], the cost of
            # DINO head `head` against CLIP head `source` (equal only for the identity).
            weight = 1 - cost[head, source]
            approx, s = self.low_rank_graph(dino_graphs[source], generator)
            clip_graph = clip_graphs[head]
            approx = rescale_to(approx, clip_graph.min(), clip_graph.max())
            mix = weight * self.dino_weight_scale
            blended.append((mix * approx + clip_graph) / (mix + 1))
            weights.append(weight)
            singular.append(s)
            ranks.append(energy_rank(s))
        found = dict(dino_eigs=dino_eigs, clip_eigs=clip_eigs, head_cost=cost,
                     head_match=match, head_weight=torch.stack(weights),
                     energy_rank=torch.tensor(ranks),
                     rank_used=torch.tensor([len(s) for s in singular]),
                     singular_values=torch.stack(singular))
        return torch.stack(blended).to(keys.dtype), found

    # -- the text side -------------------------------------------------------------------
    def crop_logits(self, features: torch.Tensor,
                    global_vector: torch.Tensor) -> Tuple[torch.Tensor, dict]:
        """One crop's (N, D) patch features and (D,) global vector -> (N, Q) logits with
        the cluster-adjusted queries, mixed with the global similarity."""
        text = self.query_features
        f = features / features.norm(dim=-1, keepdim=True)
        global_sim = (global_vector / global_vector.norm()) @ text.t()  # (Q,)
        clusters = self.cluster_ids
        members = clusters[None] == torch.arange(int(clusters.max()) + 1,
                                                 device=clusters.device)[:, None]  # (C, Q)
        # Per cluster, the member most similar to the global vector (first on ties).
        chosen = global_sim.masked_fill(~members, float('-inf')).argmax(dim=1)  # (C,)
        queries = F.normalize(text[chosen], dim=-1)  # (C, D)
        similarity = F.normalize(f, dim=-1) @ queries.t()  # (N, C)
        top = similarity.topk(min(self.topk_patches, len(f)), dim=0).indices  # (k, C)
        means = F.normalize(f[top].mean(dim=0), dim=-1)  # (C, D)
        beta = self.mean_vector_weight
        adjusted = text.clone()
        adjusted[chosen] = F.normalize((1 - beta) * queries + beta * means, dim=-1)
        gamma = self.global_semantics_weight
        logits = (f @ adjusted.t()) * (1 - gamma) + gamma * global_sim
        return logits, dict(global_sim=global_sim, adjusted_text=adjusted)

    # -- the encoder ---------------------------------------------------------------------
    def _contexts(self, contexts: Optional[Sequence[Any]], count: int) -> List[CASSImageContext]:
        """Each crop's context; a crop without one is its own image (a generator seeded
        with ``seed``, its own CLS as global vector)."""
        contexts = list(contexts) if contexts is not None else [None] * count
        return [c if c is not None else CASSImageContext(
            torch.Generator().manual_seed(self.seed), None) for c in contexts]

    def _attention(self, images: torch.Tensor, walk: BlockWalk,
                   contexts: List[CASSImageContext]) -> Tuple[torch.Tensor, List[dict]]:
        """(B, H, N, N) last-block attention over the patches and, per crop, what the head
        matching found and DINO's picture."""
        block = self.last_block
        _, keys, _ = block.attn.project_qkv(block.ln_1(walk.tokens))
        keys = keys[:, :, 1:]  # (B, H, N, d), CLS dropped
        vfm_keys, pictures = self.vfm_keys(images, walk.grid)
        vfm_keys = vfm_keys.to(keys.dtype)
        graphs, found = [], []
        for b, context in enumerate(contexts):
            graph, details = self.blended_graphs(keys[b], vfm_keys[b], context.generator)
            graphs.append(graph)
            found.append(dict(details, dino_image=pictures[b]))
        window = neighbourhood_bias(walk.grid, self.gaussian_std)[1:, 1:].to(keys)
        return torch.softmax(torch.stack(graphs) + window, dim=-1), found

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """The last block's attention (B, H, N, N) over the patches of the walked crops,
        each crop its own image (see :meth:`forward_with_trace`), and CLIP's patch grid."""
        images = walk.images
        return self._attention(images, walk, self._contexts(None, len(images)))[0], walk.grid

    def forward(self, images: torch.Tensor,
                contexts: Optional[Sequence[Any]] = None) -> EncoderOutput:
        return self.forward_with_trace(images, contexts)[0]

    def forward_with_trace(self, images: torch.Tensor,
                           contexts: Optional[Sequence[Any]] = None
                           ) -> Tuple[EncoderOutput, List[CASSTrace]]:
        """:meth:`forward` and each crop's :class:`CASSTrace`.  A crop without a context
        is its own image: a generator seeded with ``seed``, its own CLS as global vector."""
        contexts = self._contexts(contexts, len(images))
        walk = self.walk(images)
        attention, found = self._attention(images, walk, contexts)
        block = self.last_block
        values = block.attn.project_v(block.ln_1(walk.tokens))[:, :, 1:]
        features = self.visual.project(block.attn.merge_heads(attention @ values))
        own = None
        if any(c.global_vector is None for c in contexts):
            own = self.global_embedding(walk.tokens)
        logits, traces = [], []
        for b, context in enumerate(contexts):
            vector = context.global_vector if context.global_vector is not None else own[b]
            crop, text = self.crop_logits(features[b], vector.to(features.dtype))
            logits.append(crop.t().reshape(-1, *walk.grid))
            traces.append(CASSTrace(**found[b], **text))
        return EncoderOutput(features, walk.outliers, walk.grid, torch.stack(logits)), traces
