"""Guidance from intermediate blocks: thresholded patch similarities and their uses."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def guidance_similarity(tokens: torch.Tensor, threshold: float = 0.4) -> torch.Tensor:
    """Cosine similarity of patch tokens, entries below ``threshold`` set to 0.

    (B, N, C) -> (B, N, N).  A zero token has zero similarity to everything.
    """
    x = F.normalize(tokens, dim=-1)
    sim = x @ x.transpose(1, 2)
    return sim.masked_fill(sim < threshold, 0.0)


def aggregate(features: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Similarity-weighted average of features: (S / (row sums of S + 1e-6)) @ F."""
    weights = similarity / (similarity.sum(dim=-1, keepdim=True) + 1e-6)
    return weights @ features


def guidance_attention(similarity: torch.Tensor, scale: float = 3.0) -> torch.Tensor:
    """softmax(G) with G = scale * (S - mean(S)) and negative entries masked out.

    The mean is over each crop's whole N x N matrix.  A row with no non-negative entry
    (a zeroed token) attends to nothing: its weights are zero instead of NaN.
    (B, N, N) -> (B, N, N).
    """
    logits = (similarity - similarity.mean(dim=(-2, -1), keepdim=True)) * scale
    masked = logits < 0
    weights = torch.softmax(logits.masked_fill(masked, float('-inf')), dim=-1)
    return weights.masked_fill(masked.all(dim=-1, keepdim=True), 0.0)
