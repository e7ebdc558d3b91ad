"""ResCLIP (Yang et al., CVPR 2025), release yvhangyang/ResCLIP@0e085f7, on NACLIP.

Two additions to NACLIP's last block (k-k attention plus a Gaussian neighbourhood bias,
no residual, no FFN):

- RCS, residual cross-correlation self-attention: the mean R of the attention maps of
  blocks 6-9 is mixed into the last block's attention after its softmax,
  A <- tau_r ((1 - lam_r) A + lam_r R).
- SFR, semantic feedback refinement: a first pass of the last block (with RCS) labels
  every patch (its query logits upsampled to the crop, refined by PAMR on the crop,
  thresholded, the most frequent label per patch); the labels give a map S (same label,
  decayed where the straight path between two patches leaves the label, blurred along
  rows, rows normalised), mixed into the attention logits of the second pass,
  E <- tau_s ((1 - lam_s) K K^T / sqrt(d) + lam_s S / max S).

The pieces are separate functions here (:func:`path_samples`, :func:`path_validity`,
:func:`semantic_feedback_map`, :func:`query_labels`, :func:`patch_mode`) and the
encoder's methods (:meth:`ResCLIPEncoder.rcs_attention`,
:meth:`ResCLIPEncoder.first_pass_labels`, :meth:`ResCLIPEncoder.attention_weights`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..clip.model import VisionTransformer
from ..models.encoder import BlockWalk, MethodEncoder
from ..models.inference import patch_logits
from ..models.pamr import PAMR
from ..registry import ENCODERS
from .naclip import neighbourhood_bias

Grid = Tuple[int, int]


def chebyshev_steps(grid: Grid, device: Optional[torch.device] = None) -> torch.Tensor:
    """(T, T) Chebyshev distance max(|r - r'|, |c - c'|) between patch tokens (row-major)."""
    rows, cols = grid
    dr, dc = _axis_distances(rows, device), _axis_distances(cols, device)
    return torch.maximum(dr[:, None, :, None], dc[None, :, None, :]).reshape(rows * cols, -1)


def _axis_distances(length: int, device: Optional[torch.device]) -> torch.Tensor:
    a = torch.arange(length, device=device)
    return (a[:, None] - a).abs()


def path_samples(grid: Grid, step: int, device: Optional[torch.device] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Path sample ``step`` between every two patches, per axis.

    The sample from patch p = (r, c) towards p' = (r', c') is
    (row_samples[r, r'], col_samples[c, c']), where per coordinate a -> a' the sample is
    round(a + (a' - a) * step / M), half to even, computed exactly in integers, with
    M = max(rows, cols) - 1 for every pair (the release's denominator: the largest
    Chebyshev distance of the grid, not the pair's own, so a path covers s / M of its
    segment).  ``step`` runs from 0 to M; a pair uses the samples up to its Chebyshev
    distance s.

    Returns:
        row_samples (rows, rows) and col_samples (cols, cols), long.
    """
    longest = max(grid) - 1
    if not 0 <= step <= longest:
        raise ValueError(f'step must be in 0..{longest} on a {grid[0]}x{grid[1]} grid, '
                         f'got {step}')
    tables = []
    for length in grid:
        a = torch.arange(length, device=device)
        if longest == 0:
            tables.append(a[:, None].expand(length, length))
            continue
        numerator = a[:, None] * longest + (a - a[:, None]) * step  # >= 0
        quotient = torch.div(numerator, longest, rounding_mode='floor')
        twice_rest = 2 * (numerator - quotient * longest)
        up = (twice_rest > longest) | ((twice_rest == longest) & (quotient % 2 == 1))
        tables.append(quotient + up.long())
    return tables[0], tables[1]


def path_validity(labels: torch.Tensor) -> torch.Tensor:
    """Whether every path sample (:func:`path_samples`, steps 0..s with s the pair's
    Chebyshev distance) from patch p towards p' carries p's label.

    Args:
        labels: (B, rows, cols) patch labels.
    Returns:
        (B, T, T) bool, row p, column p' (row-major tokens).

    The samples are gathered one step at a time, for all crops and pairs at once and one
    axis after the other, so memory stays O(B T^2) (all steps at once would hold M times
    that).
    """
    batch, rows, cols = labels.shape
    dr, dc = _axis_distances(rows, labels.device), _axis_distances(cols, labels.device)
    start = labels[:, :, None, :, None]  # (B, r, 1, c, 1)
    # Indexed (B, r, r', c, c') until the end.
    valid = torch.ones(batch, rows, rows, cols, cols, dtype=torch.bool, device=labels.device)
    for step in range(1, max(rows, cols)):  # step 0 is p itself
        row_samples, col_samples = path_samples((rows, cols), step, labels.device)
        sample = labels.index_select(1, row_samples.flatten()).view(batch, rows, rows, cols)
        sample = sample.index_select(3, col_samples.flatten()).view(batch, rows, rows, cols,
                                                                     cols)
        ended = (dr < step)[:, :, None, None] & (dc < step)  # the pair's s < step
        valid &= (sample == start) | ended
    return valid.permute(0, 1, 3, 2, 4).reshape(batch, rows * cols, rows * cols)


def semantic_feedback_map(labels: torch.Tensor, gaussian_std: float = 5.0,
                          delete_same_entity: bool = True,
                          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """SFR's map S from patch labels (before the division by its maximum).

    Per crop, with T patch tokens (row-major): B[p, p'] = 1 where the labels of p and p'
    agree; with ``delete_same_entity``, entries whose straight path leaves p's label
    (:func:`path_validity`) are multiplied by exp(-s / M) (s the pair's Chebyshev
    distance, M the grid's largest); every row is blurred along the flattened p' index
    by a normalised 1-D Gaussian (std ``gaussian_std``, odd size
    min(T, int(6 std + 1)), zero padding; it crosses grid-row boundaries, as released),
    clipped at 0 and divided by its sum + 1e-8.

    Args:
        labels: (B, rows, cols) patch labels.
    Returns:
        (B, 1 + T, 1 + T) in ``dtype``; the CLS row and column are 0.
    """
    batch, rows, cols = labels.shape
    tokens = rows * cols
    flat = labels.reshape(batch, tokens)
    same = (flat[:, :, None] == flat[:, None, :]).to(dtype)  # (B, T, T), diagonal 1
    longest = max(rows, cols) - 1
    if delete_same_entity and longest > 0:
        steps = chebyshev_steps((rows, cols), labels.device).to(torch.float64)
        decay = torch.exp(-steps / longest).to(dtype)
        same = torch.where(path_validity(labels), same, same * decay)
    size = min(tokens, int(6 * gaussian_std + 1))
    size += 1 - size % 2
    offsets = torch.arange(size, dtype=torch.float64, device=labels.device) - size // 2
    kernel = torch.exp(-offsets ** 2 / (2 * gaussian_std ** 2))
    kernel = (kernel / kernel.sum()).to(dtype)
    blurred = F.conv1d(same.reshape(batch * tokens, 1, tokens), kernel.view(1, 1, -1),
                       padding=size // 2).view(batch, tokens, tokens)
    # A no-op in exact arithmetic; kept for convolution algorithms (FFT) that round
    # slightly below zero.
    blurred = F.relu(blurred)
    out = same.new_zeros(batch, tokens + 1, tokens + 1)
    out[:, 1:, 1:] = blurred / (blurred.sum(dim=-1, keepdim=True) + 1e-8)
    return out


def query_labels(logits: torch.Tensor, logit_scale: float, threshold: float) -> torch.Tensor:
    """(B, Q, H, W) logits -> (B, H, W) index of the most probable query under
    softmax(``logit_scale`` logits) over the queries (synonyms count apart), 0 where
    that probability is below ``threshold``."""
    probs = torch.softmax(logits * logit_scale, dim=1)
    labels = probs.argmax(dim=1)
    return labels.masked_fill(probs.amax(dim=1) < threshold, 0)


def patch_mode(labels: torch.Tensor, patch: int, num_labels: int) -> torch.Tensor:
    """(B, H, W) pixel labels -> (B, H // patch, W // patch) most frequent label of each
    patch-sized block (ties to the smallest label; remainder pixels unused)."""
    batch, height, width = labels.shape
    rows, cols = height // patch, width // patch
    blocks = labels[:, :rows * patch, :cols * patch].reshape(batch, rows, patch, cols, patch)
    blocks = blocks.permute(0, 1, 3, 2, 4).reshape(batch, rows, cols, patch * patch)
    counts = labels.new_zeros(batch, rows, cols, num_labels)
    counts.scatter_add_(-1, blocks, torch.ones_like(blocks))
    return counts.argmax(dim=-1)  # the first of equal counts


def _check_weights(name: str, weights: Sequence[float]) -> Tuple[float, float]:
    values = tuple(weights)
    if len(values) != 2:
        raise ValueError(f'{name} must be two numbers (tau, lambda), got {weights!r}')
    return float(values[0]), float(values[1])


@ENCODERS.register_module(name=['ResCLIPEncoder', 'resclip'])
class ResCLIPEncoder(MethodEncoder):
    """NACLIP's last block with residual cross-correlation self-attention (RCS) and
    semantic feedback refinement (SFR); see the module doc.

    Per crop, with k, v of the last block (on ``ln_1`` of block L-1's output), Omega
    NACLIP's Gaussian bias and R the mean attention of ``rcs_blocks``:
    A(E) = tau_r ((1 - lam_r) softmax(E + Omega) + lam_r R).  The first pass uses
    E = k k^T / sqrt(d); its patch features label the patches
    (:meth:`first_pass_labels`), whose map S (:func:`semantic_feedback_map`) gives the
    second pass E = tau_s ((1 - lam_s) k k^T / sqrt(d) + lam_s S / max S).  The output is
    out_proj(A v) alone (no residual, no FFN); the second pass's patches are the
    features.

    Args:
        visual: the CLIP ViT image tower.
        query_features: (Q, D) L2-normalised query features (the segmentor passes them).
        query_idx: (Q,) class of each query; not used, the first pass labels queries
            (synonyms apart), as released.
        gaussian_std: NACLIP's neighbourhood std, and SFR's blur std, in patches.
        temp_thd: first-pass pixels whose top query probability is below it get label 0.
        attn_rcs_weights: (tau_r, lam_r).
        attn_sfr_weights: (tau_s, lam_s).
        delete_same_entity: decay S where the path between two patches leaves the label.
        use_rcs, use_sfr: switch RCS or SFR off (ablations; the release cannot: it
            stores them as 1-tuples, always true).  Without SFR the output is the first
            pass; without RCS, A(E) = softmax(E + Omega).
        rcs_blocks: blocks (1-based) whose attention R averages.
        first_pass_logit_scale: softmax temperature of the first-pass labels (the
            release uses its segmentor's ``logit_scale``, 40 in every config).
        first_pass_pamr_steps, first_pass_pamr_dilations: the first pass's PAMR
            (0 steps: none).
        **kwargs: :class:`MethodEncoder` arguments (purification before the last block).
    """

    uses_vocabulary = True

    def __init__(self, visual: VisionTransformer, query_features: torch.Tensor,
                 query_idx: Optional[torch.Tensor] = None, gaussian_std: float = 5.0,
                 temp_thd: float = 0.5,
                 attn_rcs_weights: Sequence[float] = (2.0, 0.3),
                 attn_sfr_weights: Sequence[float] = (2.2, 0.7),
                 delete_same_entity: bool = True, use_rcs: bool = True,
                 use_sfr: bool = True, rcs_blocks: Sequence[int] = (6, 7, 8, 9),
                 first_pass_logit_scale: float = 40.0, first_pass_pamr_steps: int = 10,
                 first_pass_pamr_dilations: Sequence[int] = (8, 16), **kwargs):
        if not rcs_blocks:
            raise ValueError('rcs_blocks must name at least one block (use_rcs=False '
                             'switches RCS off)')
        super().__init__(visual, **kwargs)
        self.check_blocks({f'rcs_blocks[{i}]': b for i, b in enumerate(rcs_blocks)})
        # The walk materialises the attention of these blocks only (set here, after the
        # check above, so that a bad block is reported as an rcs_blocks entry).
        self.attention_blocks = tuple(sorted(set(rcs_blocks))) if use_rcs else ()
        if gaussian_std <= 0:
            raise ValueError(f'gaussian_std must be positive, got {gaussian_std!r}')
        if not 0 <= temp_thd <= 1:
            raise ValueError(f'temp_thd must be a probability in [0, 1], got {temp_thd!r}')
        if query_features.dim() != 2 or query_features.shape[1] != visual.output_dim:
            raise ValueError(f'query_features must be (Q, {visual.output_dim}), got '
                             f'{tuple(query_features.shape)}')
        self.register_buffer('query_features', query_features, persistent=False)
        self.gaussian_std = float(gaussian_std)
        self.temp_thd = float(temp_thd)
        self.attn_rcs_weights = _check_weights('attn_rcs_weights', attn_rcs_weights)
        self.attn_sfr_weights = _check_weights('attn_sfr_weights', attn_sfr_weights)
        self.delete_same_entity = bool(delete_same_entity)
        self.use_rcs = bool(use_rcs)
        self.use_sfr = bool(use_sfr)
        self.rcs_blocks = tuple(rcs_blocks)
        self.first_pass_logit_scale = float(first_pass_logit_scale)
        self.first_pass_pamr = (PAMR(first_pass_pamr_steps, first_pass_pamr_dilations)
                                if first_pass_pamr_steps > 0 else None)

    def working_set(self, height: int, width: int) -> int:
        rows, cols = self.visual.grid_size(height, width)
        n = rows * cols + 1
        extra = (len(self.attention_blocks) + 4) * self.visual.heads * n * n
        if self.use_sfr:  # the map, the path check; first-pass logits, PAMR's buffers
            extra += 8 * n * n + (6 * len(self.query_features) + 200) * height * width
        return super().working_set(height, width) + extra

    def rcs_attention(self, walk: BlockWalk) -> torch.Tensor:
        """R: (B, heads, 1 + N, 1 + N) mean attention of ``rcs_blocks``."""
        return torch.stack([walk.attention[b] for b in self.rcs_blocks]).mean(dim=0)

    def attention_weights(self, k: torch.Tensor, grid: Grid, rcs: Optional[torch.Tensor],
                          sfr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The last block's attention (B, heads, T, T) from its keys (B, heads, T, d), R
        (or None: no RCS) and S (B, T, T) (or None: the first pass)."""
        logits = (k @ k.transpose(-2, -1)) * k.shape[-1] ** -0.5
        if sfr is not None:
            tau, lam = self.attn_sfr_weights
            scaled = sfr / sfr.amax(dim=(-2, -1), keepdim=True)
            logits = tau * ((1 - lam) * logits + lam * scaled[:, None].to(logits.dtype))
        bias = neighbourhood_bias(grid, self.gaussian_std).to(device=k.device, dtype=k.dtype)
        weights = torch.softmax(logits + bias, dim=-1)
        if rcs is not None:
            tau, lam = self.attn_rcs_weights
            weights = tau * ((1 - lam) * weights + lam * rcs)
        return weights

    def first_pass_labels(self, features: torch.Tensor, images: torch.Tensor,
                          grid: Grid) -> torch.Tensor:
        """(B, rows, cols) query label of each patch from first-pass features (B, N, D):
        cosine logits upsampled (bilinear) to the crop, PAMR guided by the crop
        (B, 3, H, W), :func:`query_labels`, :func:`patch_mode`."""
        compute = torch.promote_types(features.dtype, torch.float32)
        logits = patch_logits(features, self.query_features, grid).to(compute)
        logits = F.interpolate(logits, size=images.shape[-2:], mode='bilinear',
                               align_corners=False)
        if self.first_pass_pamr is not None:
            logits = self.first_pass_pamr(images.to(compute), logits)
        labels = query_labels(logits, self.first_pass_logit_scale, self.temp_thd)
        return patch_mode(labels, self.visual.patch_size, len(self.query_features))

    def _last_block(self, walk: BlockWalk) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) patch tokens and (B, heads, T, T) attention of the final pass."""
        block = self.last_block
        _, k, v = block.attn.project_qkv(block.ln_1(walk.tokens))
        rcs = self.rcs_attention(walk) if self.use_rcs else None
        weights = self.attention_weights(k, walk.grid, rcs)
        if self.use_sfr:
            first = self.visual.project(block.attn.merge_heads(weights @ v)[:, 1:])
            labels = self.first_pass_labels(first, walk.images, walk.grid)
            sfr = semantic_feedback_map(labels, self.gaussian_std, self.delete_same_entity,
                                        torch.promote_types(k.dtype, torch.float32))
            weights = self.attention_weights(k, walk.grid, rcs, sfr)
        return block.attn.merge_heads(weights @ v)[:, 1:], weights

    def attention_map(self, walk: BlockWalk) -> Tuple[torch.Tensor, Tuple[int, int]]:
        return self._last_block(walk)[1], walk.grid

    def head(self, walk: BlockWalk) -> torch.Tensor:
        return self._last_block(walk)[0]
