"""The mmcv.ops stand-in: mmseg imports with mmcv-lite, in a fresh interpreter too (the
install's .pth), ops behave, and it stays inert when the real ops exist."""
import importlib
import math
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

import sfp_mmcv_ops
from sfp_mmcv_ops import ops as compat

from .conftest import REPO, TINY_CKPT

PTH = 'sfp_mmcv_ops.pth'
# docs/get_started.md's snippet, with the test weights (and one prompt template, for
# speed), in an interpreter that has not imported sfp: the installed .pth alone makes
# mmseg importable.
FRESH_INTERPRETER = f"""
import sys
from mmseg.apis import inference_model, init_model
assert 'sfp' not in sys.modules, 'sfp was imported before the config asked for it'
model = init_model('configs/sfp/sfp_vit-b16_voc21.py', device='cpu',
                   cfg_options={{'model.clip_path': {str(TINY_CKPT)!r},
                                'model.templates': ['a photo of a {{}}.']}})
result = inference_model(model, 'demo/images/000000022892.jpg')
print(type(sys.modules['mmcv.ops']).__name__, model.class_names[0],
      tuple(result.pred_sem_seg.data.shape))
"""


def test_mmseg_imports_with_mmcv_lite():
    for name in ('mmseg.models', 'mmseg.datasets', 'mmseg.apis'):
        importlib.import_module(name)
    assert isinstance(sys.modules['mmcv.ops'], compat._OpsStandIn)


def test_mmseg_api_works_as_documented_in_a_fresh_interpreter():
    result = subprocess.run([sys.executable, '-c', FRESH_INTERPRETER], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['_OpsStandIn', 'background', '(1,', '334,', '500)']
    assert 'MultiScaleDeformableAttention' not in result.stderr


def test_wheel_and_editable_wheel_ship_the_startup_hook(tmp_path):
    """`pip install .` and `pip install -e .` both put the .pth at the top of
    site-packages (built here with setuptools' PEP 517 hooks, as pip builds them)."""
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('pyproject.toml', 'setup.py', 'MANIFEST.in', 'README.md', 'LICENSE', PTH):
        shutil.copy(REPO / name, source / name)
    for package in ('sfp', 'sfp_mmcv_ops'):
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns('__pycache__'))
    build = ("from setuptools import build_meta as b; "
             "print('built', b.build_wheel('out'), b.build_editable('out'))")
    result = subprocess.run([sys.executable, '-c', build], capture_output=True, text=True,
                            cwd=source)
    assert result.returncode == 0, result.stderr[-3000:]
    built = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith('built ')]
    wheel, editable = built[-1]
    expected = (REPO / PTH).read_text()
    assert expected.startswith('import sfp_mmcv_ops;')
    with zipfile.ZipFile(source / 'out' / wheel) as archive:
        assert archive.read(PTH).decode() == expected
        assert 'sfp_mmcv_ops/ops.py' in archive.namelist()
    with zipfile.ZipFile(source / 'out' / editable) as archive:
        assert archive.read(PTH).decode() == expected


def test_the_finder_gives_the_stand_in_only_for_mmcv_ops():
    finder = sfp_mmcv_ops.StandInFinder()
    assert finder.find_spec('mmcv.cnn') is None and finder.find_spec('mmcv.opsx') is None
    spec = finder.find_spec('mmcv.ops')
    assert isinstance(finder.create_module(spec), compat._OpsStandIn)
    sfp_mmcv_ops.install()
    sfp_mmcv_ops.install()
    assert sum(isinstance(f, sfp_mmcv_ops.StandInFinder) for f in sys.meta_path) == 1


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
    monkeypatch.setattr(sfp_mmcv_ops, 'full_mmcv_ops_available', lambda: True)
    assert sfp_mmcv_ops.StandInFinder().find_spec('mmcv.ops') is None
