"""Loading vision foundation models: names, files, the cache and its recorded sha256, and
every mistake a user can make (a CLIP given as the VFM and the reverse, damaged files,
unknown names, no network)."""
import shutil

import numpy as np
import pytest
import torch

from sfp import clip
from sfp.clip import loader as clip_loader
from sfp.models import SFPSegmentor
from sfp.vfm import (
    DINO_MODELS,
    DINOVisionTransformer,
    available_vfms,
    check_vfm_tower,
    load_vfm,
    loader,
    random_vfm,
)

from .conftest import CLASSNAMES, TINY_CKPT, TINY_DINO


@pytest.fixture(scope='module')
def dino_state():
    return torch.load(TINY_DINO, weights_only=True)


def test_names_are_dinos_hub_entries():
    assert available_vfms()[:4] == ['dino_vits16', 'dino_vits8', 'dino_vitb16', 'dino_vitb8']
    assert loader.vfm_url('dino_vitb8') == ('https://dl.fbaipublicfiles.com/dino/'
                                            'dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth')
    assert DINO_MODELS['dino_vits16'].filename == 'dino_deitsmall16_pretrain.pth'
    # DINO publishes no digests: none is made up.
    assert all(m.sha256 is None for m in DINO_MODELS.values())


def test_file_loads_with_the_shape_of_its_keys(dino_state):
    tower = load_vfm(TINY_DINO, dtype='fp64')
    assert isinstance(tower, DINOVisionTransformer) and not tower.training
    assert (tower.patch_size, tower.width, tower.num_heads, tower.num_blocks,
            tower.input_resolution) == (8, 128, 2, 4, 224)
    assert tower.cls_token.dtype == torch.float64
    assert not any(p.requires_grad for p in tower.parameters())
    assert torch.equal(tower.pos_embed.float(), dino_state['pos_embed'])
    check_vfm_tower(tower)


@pytest.mark.parametrize('name, shape', [('dino_vits16', (16, 384, 6)),
                                         ('dino_vitb8', (8, 768, 12))])
def test_random_towers_have_the_published_architecture(name, shape):
    tower = random_vfm(name)
    assert (tower.patch_size, tower.width, tower.num_heads, tower.num_blocks) == (*shape, 12)
    assert loader.describe_vfm_state_dict(tower.state_dict()) == \
        f'DINO ViT-{"S" if shape[1] == 384 else "B"}/{shape[0]}'


def test_unknown_names_suggest_and_list():
    with pytest.raises(clip.UnknownModelError,
                       match=r"unknown VFM 'dino_vitb9' \(did you mean 'dino_vitb8'\?\); known: "
                             r"dino_vits16, dino_vits8, dino_vitb16, dino_vitb8"):
        load_vfm('dino_vitb9')
    with pytest.raises(clip.UnknownModelError, match="'ViT-B/16' is a CLIP model name.*clip_path"):
        load_vfm('ViT-B/16')


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / 'dino.pth'
    with pytest.raises(clip.CheckpointNotFoundError, match=f'no VFM checkpoint at {missing}.*'
                                                           'dino_vitb8'):
        load_vfm(missing)
    with pytest.raises(clip.CheckpointNotFoundError, match='is a folder; vfm_path takes one'):
        load_vfm(tmp_path)


def test_clip_and_dino_files_in_each_others_place():
    with pytest.raises(clip.CheckpointError,
                       match=r'tiny_dino_vit8.pth is a DINO ViT \(width 128, patch 8\) '
                             r'checkpoint, not a CLIP one: give it as vfm_path'):
        clip.load(TINY_DINO)
    with pytest.raises(clip.CheckpointError,
                       match='tiny_clip_state_dict.pt is a CLIP checkpoint, not a vision '
                             'foundation model: give a CLIP as clip_path'):
        load_vfm(TINY_CKPT)
    # The same through the segmentor's arguments.
    with pytest.raises(clip.CheckpointError, match='not a CLIP one: give it as vfm_path'):
        SFPSegmentor(str(TINY_DINO), str(CLASSNAMES / 'cls_voc21.txt'), device='cpu')


def test_damaged_and_foreign_files(tmp_path, dino_state):
    truncated = tmp_path / 'dino_vitbase8_pretrain.pth'
    truncated.write_bytes(TINY_DINO.read_bytes()[:200_000])
    with pytest.raises(clip.CheckpointError,
                       match="damaged or not a checkpoint; it is a zip archive that is not a "
                             "whole checkpoint.*Expected a VFM's released weights"):
        load_vfm(truncated)
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(clip.CheckpointError, match='neither a zip archive nor a tensor file'):
        load_vfm(noise)
    partial = dict(dino_state)
    del partial['blocks.3.mlp.fc2.bias']
    torch.save(partial, tmp_path / 'partial.pth')
    with pytest.raises(clip.CheckpointError,
                       match=r'looks like a DINO ViT \(width 128, patch 8\) checkpoint but does '
                             r'not fit one: .*blocks.3.mlp.fc2.bias'):
        load_vfm(tmp_path / 'partial.pth')
    torch.save({'encoder.weight': torch.zeros(2)}, tmp_path / 'other.pth')
    with pytest.raises(clip.CheckpointError,
                       match='other.pth is not a vision foundation model .*encoder.weight'):
        load_vfm(tmp_path / 'other.pth')


@pytest.fixture
def fake_dino_hub(tmp_path, monkeypatch):
    """'dino_vitb8' published at a file:// URL holding the tiny DINO; an empty cache."""
    hub = tmp_path / 'hub'
    hub.mkdir()
    shutil.copy(TINY_DINO, hub / 'dino_vitbase8_pretrain.pth')
    published = DINO_MODELS['dino_vitb8']
    monkeypatch.setitem(DINO_MODELS, 'dino_vitb8', type(published)(
        (hub / 'dino_vitbase8_pretrain.pth').as_uri(), published.architecture))
    cache = tmp_path / 'cache'
    monkeypatch.setenv('SFP_CACHE', str(cache))
    return hub, cache


def test_named_vfm_downloads_once_and_records_its_sha256(fake_dino_hub):
    hub, cache = fake_dino_hub
    tower = load_vfm('dino_vitb8')
    target = cache / 'dino_vitbase8_pretrain.pth'
    assert sorted(p.name for p in cache.iterdir()) == ['dino_vitbase8_pretrain.pth',
                                                       'dino_vitbase8_pretrain.pth.sha256']
    assert (cache / 'dino_vitbase8_pretrain.pth.sha256').read_text().strip() == \
        clip_loader.file_sha256(TINY_DINO)
    assert torch.equal(tower.pos_embed, load_vfm(TINY_DINO).pos_embed)
    (hub / 'dino_vitbase8_pretrain.pth').unlink()
    load_vfm('dino_vitb8')  # from the cache, verified against the record
    target.write_bytes(target.read_bytes()[:-10] + b'0123456789')
    with pytest.raises(clip.ChecksumMismatchError,
                       match=f'{target} has sha256 .* but it had sha256 '
                             f'{clip_loader.file_sha256(TINY_DINO)} when first used.*left '
                             f'untouched.*vfm_path'):
        load_vfm('dino_vitb8')


def test_file_placed_by_hand_is_recorded(fake_dino_hub):
    _, cache = fake_dino_hub
    cache.mkdir()
    shutil.copy(TINY_DINO, cache / 'dino_vitbase8_pretrain.pth')
    load_vfm('dino_vitb8')
    assert (cache / 'dino_vitbase8_pretrain.pth.sha256').read_text().strip() == \
        clip_loader.file_sha256(TINY_DINO)


def test_no_network_says_which_file_to_place_where(fake_dino_hub, monkeypatch):
    _, cache = fake_dino_hub
    url = 'http://127.0.0.1:9/dino/dino_vitbase8_pretrain.pth'  # refused at once
    monkeypatch.setitem(DINO_MODELS, 'dino_vitb8', type(DINO_MODELS['dino_vitb8'])(url))
    with pytest.raises(clip.CheckpointNotFoundError) as info:
        load_vfm('dino_vitb8')
    message = str(info.value)
    assert 'dino_vitb8 is not in the cache and could not be downloaded from ' + url in message
    assert f'place it at {cache / "dino_vitbase8_pretrain.pth"}' in message
    assert 'pass the file path as vfm_path' in message and '\n' not in message
    assert not cache.exists() or not any(cache.iterdir())
