"""SAM's image encoder alone against segment_anything's outputs (ProxyCLIP's SAM golden,
float64, tiny SAM): its 64 x 64 grid is not a multiple of its 14 x 14 windows, so the
windowed blocks attend to zero-padded tokens; its windows against attention written out
here; reading SAM files by name and file, and SAM given where it is not expected."""
import pytest
import torch
import torch.nn.functional as F

from sfp.clip import CheckpointError, load
from sfp.vfm import (
    SAM_MODELS,
    SAMImageEncoder,
    build_sam_image_encoder,
    load_sam_state_dict,
    load_vfm,
)
from sfp.vfm.sam import window_partition, window_unpartition

from .conftest import SHARED, TINY_CKPT, TINY_DINO, TINY_SAM
from .test_methods import MEAN, STD

GOLDEN = SHARED / 'golden' / 'vfm' / 'proxyclip_sam.pt'
# The release's VFM input: CLIP's 0-1 constants undone, then ImageNet's (proxyclip_segmentor).
CLIP_01 = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def channels(values):
    return torch.tensor(values, dtype=torch.float64).view(3, 1, 1)


def vfm_input(image) -> torch.Tensor:
    """Crop 0 of a golden image as the release gives it to its VFM (1, 3, h, w)."""
    pixels = (image['resized'].flip(0).double() - MEAN) / STD  # stored BGR
    y1, y2, x1, x2 = image['crop0_box']
    rgb = pixels[None, :, y1:y2, x1:x2] * channels(CLIP_01[1]) + channels(CLIP_01[0])
    return (rgb - channels(IMAGENET[0])) / channels(IMAGENET[1])


@pytest.fixture(scope='module')
def sam_state():
    return load_sam_state_dict(TINY_SAM)


@pytest.fixture(scope='module')
def encoder(sam_state):
    return build_sam_image_encoder(sam_state).double().requires_grad_(False)


def test_architecture_is_read_from_the_keys(encoder, sam_state):
    assert {k.split('.')[0] for k in sam_state} == {
        'image_encoder', 'prompt_encoder', 'mask_decoder'}
    assert (encoder.width, encoder.num_heads, encoder.num_blocks, encoder.global_blocks,
            encoder.input_size) == (128, 2, 4, (1, 3), 1024)
    assert [block.window for block in encoder.blocks] == [14, 0, 14, 0]
    assert encoder.neck[0].out_channels == 16
    # Strict load: every image_encoder key, nothing else.
    assert {f'image_encoder.{k}' for k in encoder.state_dict()} == {
        k for k in sam_state if k.startswith('image_encoder.')}


def test_matches_segment_anything_on_a_grid_not_a_multiple_of_its_window(encoder):
    """Crop 0 of the golden's first image (336 x 336) stretched to 1024 x 1024 as ProxyCLIP
    does: the neck's features at the golden's 1024 pinned positions."""
    golden = torch.load(GOLDEN, weights_only=False)['cases'][0]['images'][0]
    stretched = F.interpolate(vfm_input(golden), size=(1024, 1024), mode='bilinear',
                              align_corners=False)
    tokens = encoder.patch_tokens(stretched)[0]
    assert [tokens.shape[1], *encoder.grid_size(1024, 1024)] == golden['crop0_vfm_shape'] == \
        [16, 64, 64]
    assert (tokens[golden['crop0_vfm_idx']] - golden['crop0_vfm_feats']).abs().max() <= 1e-12


def test_windows_against_attention_written_out(encoder):
    """A windowed block on a 16 x 16 grid of (3-pixel) windows of 14: padded to 28 x 28,
    four windows; each window's attention over its 196 tokens (padding included), with
    relative positions q . rel_pos[i - j + 13], computed here token by token."""
    torch.manual_seed(0)
    block = encoder.blocks[0]
    x = torch.randn(1, 16, 16, 128, dtype=torch.float64)
    windows = window_partition(x, 14)
    assert windows.shape == (4, 14, 14, 128) and windows[1, :, 2:].abs().sum() == 0
    assert torch.equal(window_unpartition(windows, 14, 16, 16), x)
    attn = block.attn
    h = block.norm1(x)
    padded = F.pad(h, (0, 0, 0, 12, 0, 12))
    expected = torch.zeros_like(h)
    for wy in range(2):
        for wx in range(2):
            win = padded[0, 14 * wy:14 * wy + 14, 14 * wx:14 * wx + 14].reshape(196, 128)
            q, k, v = attn.qkv(win).reshape(196, 3, 2, 64).permute(1, 2, 0, 3)
            ys, xs = torch.arange(196) // 14, torch.arange(196) % 14
            rh = attn.rel_pos_h[ys[:, None] - ys[None, :] + 13]  # (196, 196, 64)
            rw = attn.rel_pos_w[xs[:, None] - xs[None, :] + 13]
            logits = (q / 8) @ k.transpose(1, 2) + torch.einsum('hqd,qkd->hqk', q, rh + rw)
            out = attn.proj((logits.softmax(-1) @ v).transpose(0, 1).reshape(196, 128))
            out = out.reshape(14, 14, 128)
            rows = slice(14 * wy, min(14 * wy + 14, 16))
            cols = slice(14 * wx, min(14 * wx + 14, 16))
            expected[0, rows, cols] = out[:rows.stop - rows.start, :cols.stop - cols.start]
    expected = x + expected
    expected = expected + block.mlp(block.norm2(expected))
    assert (block(x) - expected).abs().max() <= 1e-12
    out, weights, values = block.forward_with_attention(x)
    assert (out - expected).abs().max() <= 1e-12
    assert weights.shape == (4, 2, 196, 196) and values.shape == (4, 2, 196, 64)
    assert torch.allclose(weights.sum(-1), torch.ones(4, 2, 196, dtype=torch.float64))


def test_names_and_files(sam_state, tmp_path):
    assert SAM_MODELS['sam_vit_b'].url == \
        'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth'
    assert [SAM_MODELS[n].architecture['global_blocks'] for n in SAM_MODELS] == [
        (2, 5, 8, 11), (5, 11, 17, 23), (7, 15, 23, 31)]
    tower = load_vfm(TINY_SAM)
    assert isinstance(tower, SAMImageEncoder) and not tower.training
    with pytest.raises(CheckpointError, match='is a DINO ViT .* checkpoint, not a SAM one'):
        load_sam_state_dict(TINY_DINO)
    with pytest.raises(CheckpointError, match='is a CLIP checkpoint, not a SAM one'):
        load_sam_state_dict(TINY_CKPT)
    with pytest.raises(CheckpointError, match=r'is a SAM ViT \(width 128\) checkpoint, not '
                                              'a CLIP one: give it as vfm_path'):
        load(TINY_SAM)
    with pytest.raises(CheckpointError, match='no VFM checkpoint at .*missing.pth'):
        load_sam_state_dict(tmp_path / 'missing.pth')
    encoder_only = tmp_path / 'encoder.pth'
    torch.save({k: v for k, v in sam_state.items() if k.startswith('image_encoder.')},
               encoder_only)
    assert load_sam_state_dict(encoder_only).keys() <= sam_state.keys()
