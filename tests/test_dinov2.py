"""The DINOv2 tower alone against DINOv2's own outputs (ProxyCLIP's DINOv2 golden, float64,
tiny DINOv2 with registers) at a grid other than its checkpoint's (24 x 24 against 37 x 37),
its antialiased positional-embedding resize against the kernel written out here, and the
key names that tell DINOv2 from DINO."""
import numpy as np
import pytest
import torch

from sfp.clip import CheckpointError
from sfp.vfm import (
    DINOV2_MODELS,
    DINOv2VisionTransformer,
    check_vfm_tower,
    load_sam_state_dict,
    load_vfm,
)
from sfp.vfm.dinov2 import resize_pos_embed_antialiased

from .conftest import SHARED, TINY_DINOV2
from .test_sam import vfm_input

GOLDEN = SHARED / 'golden' / 'vfm' / 'proxyclip_dinov2.pt'


@pytest.fixture(scope='module')
def dinov2():
    return load_vfm(TINY_DINOV2, dtype='fp64')


def test_architecture_from_the_keys(dinov2):
    assert isinstance(dinov2, DINOv2VisionTransformer)
    assert (dinov2.patch_size, dinov2.width, dinov2.num_heads, dinov2.num_blocks,
            dinov2.num_registers, dinov2.num_prefix_tokens, dinov2.input_resolution,
            dinov2.antialias) == (14, 128, 2, 4, 4, 5, 518, True)
    check_vfm_tower(dinov2, (42, 56))


def test_matches_dinov2_at_another_grid(dinov2):
    """Crop 0 (336 x 336: a 24 x 24 grid, the 37 x 37 position embedding resized) of both
    golden images: the last block's normed patch tokens, registers and CLS dropped."""
    for image in torch.load(GOLDEN, weights_only=False)['cases'][0]['images']:
        tokens = dinov2.patch_tokens(vfm_input(image))[0]
        assert [tokens.shape[1], *dinov2.grid_size(336, 336)] == image['crop0_vfm_shape']
        assert (tokens[image['crop0_vfm_idx']] - image['crop0_vfm_feats']).abs().max() \
            <= 1e-12


def antialiased_bicubic(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's antialiased bicubic resize (a = -0.5), from the
    kernel's definition: support 2 * scale when shrinking, taps outside the grid absent,
    weights normalised."""
    def cubic(t):
        t, a = abs(t), -0.5
        if t < 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0

    scale = n_in / n_out
    support, inv = (2 * scale, 1 / scale) if scale >= 1 else (2.0, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        taps = [cubic((j - center + 0.5) * inv) for j in range(lo, hi)]
        weights[i, lo:hi] = np.array(taps) / sum(taps)
    return weights


@pytest.mark.parametrize('rows, cols', [(24, 24), (16, 40), (37, 20)])
def test_position_embedding_resize_by_hand(dinov2, rows, cols):
    pos = dinov2.pos_embed[0]
    got = resize_pos_embed_antialiased(pos, rows, cols)
    grid = pos[1:].reshape(37, 37, -1).numpy()
    expected = np.einsum('ri,ijc,sj->rsc', antialiased_bicubic(37, rows), grid,
                         antialiased_bicubic(37, cols))
    assert torch.equal(got[0], pos[0])
    assert np.abs(got[1:].numpy() - expected.reshape(rows * cols, -1)).max() <= 1e-12


def test_names_and_families(tmp_path):
    assert list(DINOV2_MODELS) == ['dinov2_vits14', 'dinov2_vitb14', 'dinov2_vitl14',
                                   'dinov2_vits14_reg', 'dinov2_vitb14_reg',
                                   'dinov2_vitl14_reg']
    assert DINOV2_MODELS['dinov2_vitb14_reg'].url == (
        'https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth')
    assert DINOV2_MODELS['dinov2_vitl14'].url == (
        'https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth')
    state = torch.load(TINY_DINOV2, weights_only=True)
    # Without registers: DINO's +0.1 scale-factor resize, one prefix token.
    plain = {k: v for k, v in state.items() if k != 'register_tokens'}
    torch.save(plain, tmp_path / 'plain.pth')
    tower = load_vfm(tmp_path / 'plain.pth')
    assert (tower.num_prefix_tokens, tower.antialias) == (1, False)
    with pytest.raises(CheckpointError, match=r'is a DINOv2 ViT \(width 128, patch 14\) '
                                              'with 4 registers checkpoint, not a SAM one'):
        load_sam_state_dict(TINY_DINOV2)
