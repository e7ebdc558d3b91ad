"""Label propagation over patches and pixels (LPOSS and LPOSS+, Stojnic et al., CVPR 2025,
release vladan-stojnic/LPOSS@e489a74), as a refiner of any method's logits.

Patch level: the nodes are the logit cells of all windows of one image; each is linked to
its ``k`` most similar nodes by a vision foundation model's features (cosine, all windows
at once, itself included), weighted ``max(s, 0)^gamma * exp(-sigma * distance^pix_dist_pow)``
with the distance between the cells' centres in input pixels.  Pixel level: every pixel
of the input image is linked to the pixels of its ``(r // 2)``-neighbourhood, weighted
``exp(-|Lab_p - Lab_q| / tau)``.  On either graph W (symmetrised, no self-loops),
``S = D^-1/2 W D^-1/2`` and ``L = I - alpha S``; each column y of the logits becomes the
``cg_maxiter``-th conjugate-gradient iterate of ``L x = y`` from x = 0 (the release's
fixed 10 steps: not the solution of the system, which is about 1 % away).

Memory stays bounded: the kNN search runs a block of rows at a time (never an N x N
matrix), the patch graph is a sparse matrix of 2 N k entries, the pixel graph is one
weight map per neighbour offset (half of them: the graph is symmetric), and the CG runs
on as many columns at once as ``max_elements`` allows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..vfm import VFMTower

#: DINO's own normalisation on 0..1 RGB (LPOSS normalises each tower's input itself).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: kornia's sRGB (D65) -> XYZ matrix and white point, as LPOSS+'s colour distance reads them.
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
              (0.212671, 0.715160, 0.072169),
              (0.019334, 0.119193, 0.950227))
XYZ_WHITE = (0.95047, 1.0, 1.08883)
#: LPOSS+ divides L, a, b by these to bring them to about 0..1.
LAB_SCALE = (100.0, 128.0, 128.0)
FEATURE_KINDS = ('q', 'k', 'v')


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       maxiter: int = 10, tol: float = 1e-6) -> torch.Tensor:
    """The conjugate-gradient iterate of ``A x = b`` for each column of ``b`` (N, M) at
    once, from x = 0, without preconditioner, as cupy's ``cg`` runs it per column: a
    column stops when ``||r|| <= tol ||b||`` or after ``maxiter`` iterations; a zero
    column gives zeros.  ``apply`` maps (N, m) to ``A`` times it, for any m."""
    x = torch.zeros_like(b)
    r = b.clone()
    atol = tol * b.norm(dim=0)
    active = atol > 0
    rho = (r * r).sum(dim=0)
    p = r.clone()
    for iteration in range(maxiter):
        if not active.any():
            break
        if iteration:
            rho_new = (r * r).sum(dim=0)
            beta = torch.where(active, rho_new / torch.where(active, rho, 1), 0)
            p = r + beta * p
            rho = rho_new
        q = apply(p)
        curvature = (p * q).sum(dim=0)
        step = torch.where(active, rho / torch.where(active, curvature, 1), 0)
        x += step * p
        r -= step * q
        active &= r.norm(dim=0) > atol
    return x


def column_chunks(columns: int, nodes: int, max_elements: int) -> List[slice]:
    """Slices of columns processed together: about ``max_elements`` values over the
    CG's six (nodes, chunk) vectors."""
    step = max(1, min(columns, max_elements // max(6 * nodes, 1)))
    return [slice(start, min(start + step, columns)) for start in range(0, columns, step)]


def knn_search(features: torch.Tensor, k: int, queries: Optional[torch.Tensor] = None,
               block: int = 1024) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact inner-product kNN of ``queries`` (n, C) among ``features`` (N, C), a block of
    query rows at a time (at most ``block`` x N similarities at once): similarities (n, k)
    in descending order and node indices (n, k).  The queries default to all nodes, each
    of which then finds itself (the release's faiss search, brute force)."""
    queries = features if queries is None else queries
    k = min(k, features.shape[0])
    sims, idx = [], []
    for start in range(0, queries.shape[0], block):
        top = (queries[start:start + block] @ features.T).topk(k, dim=1)
        sims.append(top.values)
        idx.append(top.indices)
    return torch.cat(sims), torch.cat(idx)


@dataclass
class NormalisedGraph:
    """``S = D^-1/2 W D^-1/2`` of a sparse symmetric graph W without self-loops.

    Attributes:
        matrix: S as a sparse CSR (N, N) matrix.
        degree: (N,) the degrees of W (a node without edges has 1, as released).
    """

    matrix: torch.Tensor
    degree: torch.Tensor

    @classmethod
    def from_edges(cls, rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor,
                   size: int) -> NormalisedGraph:
        """W = A + A^T of the directed weighted edges (rows -> cols), diagonal dropped."""
        keep = rows != cols
        rows, cols, weights = rows[keep], cols[keep], weights[keep]
        index = torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])])
        w = torch.sparse_coo_tensor(index, torch.cat([weights, weights]), (size, size),
                                    check_invariants=False).coalesce()
        (i, j), values = w.indices(), w.values()
        degree = torch.zeros(size, dtype=values.dtype, device=values.device)
        degree.index_add_(0, i, values)
        degree = torch.where(degree == 0, torch.ones_like(degree), degree)
        scale = degree.rsqrt()
        normalised = torch.sparse_coo_tensor(w.indices(), values * scale[i] * scale[j],
                                             (size, size), is_coalesced=True,
                                             check_invariants=False)
        with warnings.catch_warnings():  # sparse CSR is 'beta'; its product is all we use
            warnings.simplefilter('ignore', UserWarning)
            return cls(normalised.to_sparse_csr(), degree)

    def laplacian_apply(self, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> (I - alpha S) x for (N, m) x."""
        return lambda x: x - alpha * (self.matrix @ x)


@dataclass
class PixelGraph:
    """LPOSS+'s pixel graph of an (h, w) image, normalised (S = D^-1/2 W D^-1/2), as one
    weight map per neighbour offset (dy, dx) with dy > 0, or dy = 0 and dx > 0; the
    opposite offset has the same weights, read shifted (W is symmetric).

    Attributes:
        offsets: the (dy, dx) of ``weights``.
        weights: (len(offsets), h + 2 n, w + 2 n), n = the radius: at [o, n + y, n + x]
            the normalised weight between pixel (y, x) and (y + dy, x + dx), 0 where the
            latter is outside the image.
        degree: (h, w) the degrees of W (1 where a pixel has no weight at all).
    """

    offsets: List[Tuple[int, int]]
    weights: torch.Tensor
    degree: torch.Tensor

    @property
    def radius(self) -> int:
        return (self.weights.shape[-1] - self.degree.shape[-1]) // 2

    @classmethod
    def build(cls, lab: torch.Tensor, radius: int, tau: float) -> PixelGraph:
        """``lab`` (3, h, w) the scaled Lab image; edges to every pixel within ``radius``
        in each direction (a (2 radius + 1)^2 square without its centre)."""
        h, w = lab.shape[-2:]
        n = radius
        offsets = [(dy, dx) for dy in range(0, n + 1) for dx in range(-n, n + 1)
                   if (dy, dx) > (0, 0)]
        padded = F.pad(lab, (n, n, n, n))
        inside = F.pad(lab.new_ones((h, w)), (n, n, n, n))
        weights = lab.new_zeros((len(offsets), h + 2 * n, w + 2 * n))
        degree = lab.new_zeros((h, w))
        for o, (dy, dx) in enumerate(offsets):
            other = (slice(None), slice(n + dy, n + dy + h), slice(n + dx, n + dx + w))
            weight = torch.exp(-(lab - padded[other]).square().sum(dim=0).sqrt() / tau)
            weight *= inside[other[1:]]
            weights[o, n:n + h, n:n + w] = weight
            degree += weight  # the edge to (y + dy, x + dx) ...
            degree += weights[o, n - dy:n - dy + h, n - dx:n - dx + w]  # ... and from it
        degree = torch.where(degree == 0, torch.ones_like(degree), degree)
        scale = F.pad(degree.rsqrt(), (n, n, n, n))
        for o, (dy, dx) in enumerate(offsets):
            weights[o, n:n + h, n:n + w] *= scale[n:n + h, n:n + w] * scale[
                n + dy:n + dy + h, n + dx:n + dx + w]
        return cls(offsets, weights, degree)

    def laplacian_apply(self, alpha: float, band_elements: int = 1 << 22
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> (I - alpha S) x for (h * w, m) x, pixels row-major.

        Pixels hold their m values side by side; on the CPU a band of rows is finished
        (all offsets) before the next, which keeps its data near the cache (about
        ``band_elements`` values a band); a GPU takes the whole image at once."""
        h, w = self.degree.shape
        n = self.radius
        weights = self.weights[..., None]  # (offsets, h + 2n, w + 2n, 1)

        def apply(x: torch.Tensor) -> torch.Tensor:
            m = x.shape[1]
            image = F.pad(x.reshape(h, w, m), (0, 0, n, n, n, n))
            out = torch.zeros((h, w, m), dtype=x.dtype, device=x.device)
            rows = h if x.device.type != 'cpu' else max(1, band_elements // (w * m))
            for top in range(0, h, rows):
                bottom = min(top + rows, h)
                band = out[top:bottom]
                for o, (dy, dx) in enumerate(self.offsets):
                    # to (y + dy, x + dx), weight stored at (y, x); and to (y - dy, x - dx),
                    # weight stored at (y - dy, x - dx)
                    band.addcmul_(weights[o, n + top:n + bottom, n:n + w],
                                  image[n + top + dy:n + bottom + dy, n + dx:n + dx + w])
                    band.addcmul_(weights[o, n + top - dy:n + bottom - dy, n - dx:n - dx + w],
                                  image[n + top - dy:n + bottom - dy, n - dx:n - dx + w])
            return x - alpha * out.reshape(h * w, m)

        return apply


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(3, h, w) sRGB in 0..1 -> (3, h, w) CIE Lab (D65), kornia's formulas."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(XYZ_WHITE, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    xyz = torch.einsum('ij,jhw->ihw', matrix, linear) / white
    threshold = 0.008856
    f = torch.where(xyz > threshold, xyz.clamp(min=threshold) ** (1 / 3),
                    7.787 * xyz + 4.0 / 29.0)
    fx, fy, fz = f
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)])


class LabelPropagation(nn.Module):
    """LPOSS's refiner: patch-level propagation over a VFM's kNN graph and (``pixel_refine``,
    LPOSS+) pixel-level propagation over colour; on any method's logits.

    Args:
        vfm: the VFM tower whose last-block features link the patches (DINO ViT-B/16 in
            the release); None when only the pixel level runs.
        patch: run the patch level (needs ``vfm``).
        pixel_refine: run the pixel level (LPOSS+).
        alpha: the propagation's weight on the graph (L = I - alpha S), both levels.
        gamma: exponent of the clamped feature similarity.
        k: neighbours per node, the node itself included.
        sigma, pix_dist_pow: the distance weight ``exp(-sigma * distance^pix_dist_pow)``.
        tau: colour temperature of the pixel graph.
        r: the pixel neighbourhood's side; ``r // 2`` pixels each way.
        enc_type_feats: which of the VFM's last-block q, k, v are the features.
        cg_tol, cg_maxiter: the conjugate gradient's relative tolerance and iterations.
        knn_block: query rows per block of the kNN search.
        max_elements: values of the CG's vectors held at once (columns are chunked).
    """

    def __init__(self, vfm: Optional[VFMTower] = None, patch: bool = True,
                 pixel_refine: bool = False, alpha: float = 0.95, gamma: float = 3.0,
                 k: int = 400, sigma: float = 0.01, pix_dist_pow: float = 1.0,
                 tau: float = 0.01, r: int = 13, enc_type_feats: str = 'v',
                 cg_tol: float = 1e-6, cg_maxiter: int = 10, knn_block: int = 1024,
                 max_elements: int = 1 << 25):
        super().__init__()
        if enc_type_feats not in FEATURE_KINDS:
            raise ValueError(f'enc_type_feats must be one of {", ".join(FEATURE_KINDS)}, got '
                             f'{enc_type_feats!r}')
        if not (patch or pixel_refine):
            raise ValueError('propagation with patch=False and pixel_refine=False does '
                             'nothing: enable one of them or drop propagation')
        if patch and vfm is None:
            raise ValueError('patch-level propagation reads a vision foundation model: set '
                             "the segmentor's vfm_path (LPOSS: 'dino_vitb16')")
        for name, value in dict(k=k, r=r, cg_maxiter=cg_maxiter, knn_block=knn_block).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        if not 0 < alpha < 1:
            raise ValueError(f'alpha must be in (0, 1), got {alpha!r}')
        self.vfm = vfm if patch else None
        self.patch = patch
        self.pixel_refine = pixel_refine
        self.alpha, self.gamma, self.k = alpha, gamma, k
        self.sigma, self.pix_dist_pow = sigma, pix_dist_pow
        self.tau, self.r = tau, r
        self.enc_type_feats = enc_type_feats
        self.cg_tol, self.cg_maxiter = cg_tol, cg_maxiter
        self.knn_block = knn_block
        self.max_elements = max_elements

    # -- the patch level ----------------------------------------------------------------
    def vfm_features(self, rgb: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) 0..1 RGB crops -> (B, rows * cols, C) unit-norm last-block
        ``enc_type_feats`` of the VFM (heads side by side, prefix tokens dropped), resized
        bilinearly to the logits' ``grid`` where the VFM's differs."""
        tower = self.vfm
        dtype = next(tower.parameters()).dtype

        def channels(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)

        x = ((rgb - channels(tower.mean)) / channels(tower.std)).to(dtype)
        tokens = tower.embed(x)
        for block in tower.blocks[:-1]:
            tokens = block(tokens)
        last = tower.blocks[-1]
        qkv = last.attn.project_qkv(last.norm1(tokens))  # each (B, heads, P + n, d)
        chosen = qkv[FEATURE_KINDS.index(self.enc_type_feats)][:, :, tower.num_prefix_tokens:]
        b, heads, n, d = chosen.shape
        features = chosen.transpose(1, 2).reshape(b, n, heads * d)
        own = tower.grid_size(*rgb.shape[-2:])
        if tuple(own) != tuple(grid):
            features = F.interpolate(features.transpose(1, 2).reshape(b, -1, *own), size=grid,
                                     mode='bilinear', align_corners=False)
            features = features.flatten(2).transpose(1, 2)
        return features / features.norm(dim=-1, keepdim=True)

    def patch_graph(self, features: torch.Tensor, positions: torch.Tensor) -> NormalisedGraph:
        """The normalised kNN graph of nodes with unit-norm ``features`` (N, C) at
        ``positions`` (N, 2) (input pixels)."""
        sims, idx = knn_search(features, self.k, block=self.knn_block)
        n, k = idx.shape
        distance = (positions[:, None] - positions[idx]).square().sum(dim=-1).sqrt()
        weights = sims.clamp(min=0) ** self.gamma * torch.exp(
            -self.sigma * distance ** self.pix_dist_pow)
        rows = torch.arange(n, device=idx.device).repeat_interleave(k)
        return NormalisedGraph.from_edges(rows, idx.flatten(), weights.flatten(), n)

    def propagate(self, apply: Callable[[torch.Tensor], torch.Tensor],
                  scores: torch.Tensor) -> torch.Tensor:
        """The CG iterate of ``L x = y`` for each column y of ``scores`` (N, M), column
        chunks at a time."""
        out = torch.empty_like(scores)
        for chunk in column_chunks(scores.shape[1], scores.shape[0], self.max_elements):
            out[:, chunk] = conjugate_gradient(apply, scores[:, chunk].contiguous(),
                                               self.cg_maxiter, self.cg_tol)
        return out

    def propagate_patches(self, scores: torch.Tensor, features: torch.Tensor,
                          positions: torch.Tensor) -> torch.Tensor:
        """(N, M) node scores over the graph of ``features`` and ``positions``."""
        graph = self.patch_graph(features.to(scores.dtype), positions.to(scores.dtype))
        return self.propagate(graph.laplacian_apply(self.alpha), scores)

    # -- the pixel level ----------------------------------------------------------------
    def pixel_graph(self, rgb: torch.Tensor) -> PixelGraph:
        """LPOSS+'s graph of a (3, h, w) 0..1 RGB image."""
        scale = torch.tensor(LAB_SCALE, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
        return PixelGraph.build(rgb_to_lab(rgb) / scale, self.r // 2, self.tau)

    def propagate_pixels(self, logits: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """(M, h, w) maps over the pixel graph of the (3, h, w) 0..1 RGB image."""
        m, h, w = logits.shape
        graph = self.pixel_graph(rgb.to(logits.dtype))
        out = self.propagate(graph.laplacian_apply(self.alpha), logits.reshape(m, -1).T)
        return out.T.reshape(m, h, w)


def node_positions(starts: Sequence[Tuple[int, int]], grids: Sequence[Tuple[int, int]],
                   cell: int) -> torch.Tensor:
    """(N, 2) float64 (y, x) centres of the cells of windows whose grids start at
    ``starts`` (input pixels) with ``grids`` cells of ``cell`` pixels, windows in order,
    each row-major."""
    centres = []
    for (top, left), (rows, cols) in zip(starts, grids):
        y = top + cell // 2 + cell * torch.arange(rows, dtype=torch.float64)
        x = left + cell // 2 + cell * torch.arange(cols, dtype=torch.float64)
        centres.append(torch.stack(torch.meshgrid(y, x, indexing='ij'), dim=-1).reshape(-1, 2))
    return torch.cat(centres)
