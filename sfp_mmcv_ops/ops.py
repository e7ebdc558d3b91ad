"""The stand-in for ``mmcv.ops``: the two ops mmseg calls at import time, in PyTorch.

mmsegmentation imports ``mmcv.ops`` at module level (``point_sample`` in the
mask-classification utilities, ``sigmoid_focal_loss`` in the focal loss), but
``mmcv-lite`` ships those ops without their compiled ``mmcv._ext`` extension.  SFP needs
none of the compiled ops: :func:`build_stand_in` makes a module that offers those two
functions and raises :class:`ModuleNotFoundError` for every other op, which is exactly
what mmseg's optional imports (``try: from mmcv.ops import X`` /
``except ModuleNotFoundError``) fall back on.  :mod:`sfp_mmcv_ops` decides when it is used.
"""
from __future__ import annotations

import types
from typing import Optional

import torch
import torch.nn.functional as F

STAND_IN_NAME = 'mmcv.ops'


def point_sample(input: torch.Tensor,
                 points: torch.Tensor,
                 align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` (N, C, H, W) at ``points`` given in [0, 1] x [0, 1].

    ``points`` is (N, P, 2) or (N, Hg, Wg, 2) in (x, y) order, as in mmcv;
    the result is (N, C, P) or (N, C, Hg, Wg).
    """
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, 2.0 * grid - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


def sigmoid_focal_loss(input: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """mmcv's sigmoid focal loss on (N, C) logits and (N,) class indices.

    Same contract as the compiled op: ``weight`` is per class and indexed by
    each row's target, ``'mean'`` divides the sum by N.
    """
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    num_classes = input.size(1)
    # A target equal to num_classes (background in mmdet style) matches no column.
    positive = F.one_hot(target, num_classes + 1)[:, :num_classes].to(input.dtype)
    p = input.sigmoid()
    tiny = torch.finfo(input.dtype).tiny
    pos_term = -alpha * (1 - p).pow(gamma) * p.clamp(min=tiny).log()
    neg_term = -(1 - alpha) * p.pow(gamma) * (1 - p).clamp(min=tiny).log()
    loss = positive * pos_term + (1 - positive) * neg_term
    if weight is not None:
        loss = loss * weight[target.clamp(max=num_classes - 1)].unsqueeze(1)
    if reduction == 'mean':
        return loss.sum() / input.size(0)
    if reduction == 'sum':
        return loss.sum()
    return loss


class _OpsStandIn(types.ModuleType):
    """``mmcv.ops`` without compiled ops: unknown names raise ModuleNotFoundError."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f"mmcv.ops.{name} needs mmcv's compiled extension, which mmcv-lite does not "
            f"ship; install the full 'mmcv' package to use it (SFP itself does not).",
            name=f'{STAND_IN_NAME}.{name}')


def build_stand_in() -> types.ModuleType:
    """A fresh ``mmcv.ops`` stand-in module."""
    module = _OpsStandIn(STAND_IN_NAME, __doc__)
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss
    module.__all__ = ['point_sample', 'sigmoid_focal_loss']
    return module
