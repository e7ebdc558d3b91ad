"""The mmcv.ops stand-in: mmseg imports with mmcv-lite, ops behave, and it stays inert
when the real ops exist."""
import importlib
import math
import sys

import pytest
import torch

from sfp import compat


def test_mmseg_imports_with_mmcv_lite():
    for name in ('mmseg.models', 'mmseg.datasets', 'mmseg.apis'):
        importlib.import_module(name)
    assert isinstance(sys.modules['mmcv.ops'], compat._OpsStandIn)


def test_unavailable_ops_raise_module_not_found_for_mmseg_fallbacks():
    from mmseg.models.decode_heads import cc_head, psa_head
    assert cc_head.CrissCrossAttention is None and psa_head.PSAMask is None
    with pytest.raises(ModuleNotFoundError, match='full .mmcv'):
        from mmcv.ops import DeformConv2d  # noqa: F401


def test_point_sample_matches_hand_bilinear():
    image = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4)
    # Pixel centres of a 3x4 map sit at ((j + .5) / 4, (i + .5) / 3) in [0, 1] coordinates.
    points = torch.tensor([[[0.5 / 4, 0.5 / 3], [3.5 / 4, 2.5 / 3], [1.0 / 4, 0.5 / 3]]],
                          dtype=torch.float64)
    out = compat.point_sample(image, points)
    # Centre of (0,0) -> 0; centre of (2,3) -> 11; halfway between (0,0) and (0,1) -> 0.5.
    assert out.shape == (1, 1, 3)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 11.0, 0.5], dtype=torch.float64))
    grid_points = points.view(1, 3, 1, 2)
    assert compat.point_sample(image, grid_points).shape == (1, 1, 3, 1)


def test_sigmoid_focal_loss_matches_formula():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1]], dtype=torch.float64)
    target = torch.tensor([1, 0])
    gamma, alpha = 2.0, 0.25

    def term(x, positive):
        p = 1 / (1 + math.exp(-x))
        if positive:
            return -alpha * (1 - p) ** gamma * math.log(p)
        return -(1 - alpha) * p ** gamma * math.log(1 - p)

    expected = torch.tensor([[term(0.3, False), term(-1.2, True)],
                             [term(2.0, True), term(0.1, False)]], dtype=torch.float64)
    none = compat.sigmoid_focal_loss(logits, target, gamma, alpha, None, 'none')
    assert torch.allclose(none, expected)
    assert torch.isclose(compat.sigmoid_focal_loss(logits, target), expected.sum() / 2)
    weight = torch.tensor([2.0, 3.0], dtype=torch.float64)
    weighted = compat.sigmoid_focal_loss(logits, target, gamma, alpha, weight, 'sum')
    assert torch.isclose(weighted, (expected * torch.tensor([[3.0], [2.0]])).sum())


def test_stand_in_is_inert_when_full_mmcv_ops_exist(monkeypatch):
    monkeypatch.delitem(sys.modules, 'mmcv.ops')
    monkeypatch.setattr(compat, 'full_mmcv_ops_available', lambda: True)
    assert compat.install_mmcv_ops_stand_in() is False
    assert 'mmcv.ops' not in sys.modules


def test_stand_in_install_is_idempotent():
    assert compat.install_mmcv_ops_stand_in() is True
    assert compat.install_mmcv_ops_stand_in() is True
