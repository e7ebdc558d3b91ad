"""Loading CLIP checkpoints: both formats, architecture inference, precisions and every
error a new user can run into."""
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from sfp import clip
from sfp.clip import loader

from .conftest import SHARED, TINY_CKPT


@pytest.fixture(scope='module')
def tiny_state():
    return torch.load(TINY_CKPT, weights_only=True)


def torchscript_archive(state_dict, path):
    """A TorchScript archive holding ``state_dict`` under OpenAI's key names."""

    class Holder(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Holder()
    for key, value in state_dict.items():
        *parents, leaf = key.split('.')
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, Holder())
            module = getattr(module, name)
        module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    # OpenAI's archives also carry non-weight entries; the loader must drop them.
    root.register_buffer('input_resolution', torch.tensor(224))
    torch.jit.save(torch.jit.script(root), str(path))
    return path


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_architecture_inferred_from_keys(tiny_state):
    cfg = clip.infer_config(tiny_state)
    assert (cfg.embed_dim, cfg.image_resolution, cfg.vision_layers, cfg.vision_width,
            cfg.vision_patch_size, cfg.vision_heads) == (64, 224, 12, 128, 16, 2)
    assert (cfg.context_length, cfg.vocab_size, cfg.transformer_width, cfg.transformer_heads,
            cfg.transformer_layers) == (77, 49408, 64, 1, 2)


def test_torchscript_and_state_dict_load_the_same_weights(tiny_state, tmp_path):
    archive = torchscript_archive(tiny_state, tmp_path / 'tiny_ts.pt')
    from_state = clip.load(TINY_CKPT)
    from_archive = clip.load(archive)
    assert same_weights(from_state, from_archive)
    assert torch.equal(from_state.visual.proj, tiny_state['visual.proj'].float())


@pytest.mark.skipif(not (SHARED / 'golden').is_dir(), reason='needs ../shared/golden')
def test_release_golden_torchscript_matches_state_dict():
    assert same_weights(clip.load(TINY_CKPT),
                        clip.load(SHARED / 'golden' / 'tiny_clip_torchscript.pt'))


@pytest.mark.parametrize('precision,dtype', [('fp32', torch.float32), ('fp16', torch.float16),
                                             ('bf16', torch.bfloat16), ('fp64', torch.float64)])
def test_precisions(precision, dtype):
    model = clip.load(TINY_CKPT, precision=precision)
    assert model.dtype == dtype and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    images = torch.randn(2, 3, 224, 224)
    tokens = clip.tokenize(['a photo of a cat', 'a dog'])
    ref = clip.load(TINY_CKPT, precision='fp64')
    with torch.no_grad():
        img, txt = model.encode_image(images), model.encode_text(tokens)
        img_ref, txt_ref = ref.encode_image(images.double()), ref.encode_text(tokens)
    tol = {torch.float64: 1e-12, torch.float32: 1e-4, torch.float16: 3e-2,
           torch.bfloat16: 2e-1}[dtype]
    assert img.shape == (2, 64) and txt.shape == (2, 64)
    assert (img.double() - img_ref).abs().max() < tol * img_ref.abs().max()
    assert (txt.double() - txt_ref).abs().max() < tol * txt_ref.abs().max()


def test_clip_forward_scores_matching_pairs():
    model = clip.load(TINY_CKPT, precision='fp64')
    logits_img, logits_txt = model(torch.randn(3, 3, 224, 224, dtype=torch.float64),
                                   clip.tokenize(['a', 'b']))
    assert logits_img.shape == (3, 2) and torch.equal(logits_img.t(), logits_txt)


def test_unknown_precision():
    with pytest.raises(ValueError, match='fp32, fp16, bf16, fp64'):
        clip.load(TINY_CKPT, precision='int8')


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(clip.UnknownModelError, match="'ViT-H/99'.*ViT-B/16.*ViT-L/14"):
        clip.load('ViT-H/99')


def test_missing_file_says_where_it_looked(tmp_path):
    missing = tmp_path / 'nowhere' / 'ViT-B-16.pt'
    with pytest.raises(clip.CheckpointNotFoundError, match=str(missing)) as info:
        clip.load(missing)
    assert 'ViT-B/16' in str(info.value)  # and how to get one


def test_folder_without_a_checkpoint_names_what_was_expected(tmp_path):
    with pytest.raises(clip.CheckpointNotFoundError,
                       match='not a CLIP checkpoint folder.*open_clip_config.json.*config.json'):
        clip.load(tmp_path)


def test_corrupt_checkpoint(tmp_path):
    truncated = tmp_path / 'truncated.pt'
    truncated.write_bytes(TINY_CKPT.read_bytes()[:100_000])
    with pytest.raises(clip.CheckpointError, match='truncated.pt.*damaged or not a checkpoint'):
        clip.load(truncated)
    text = tmp_path / 'notes.pt'
    text.write_text('not a checkpoint')
    with pytest.raises(clip.CheckpointError, match='damaged or not a checkpoint'):
        clip.load(text)
    noise = tmp_path / 'noise.pt'
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(clip.CheckpointError) as info:
        clip.load(noise)
    message = str(info.value)
    assert 'noise.pt' in message and 'neither a zip archive nor a tensor file' in message
    assert 'weights_only' not in message  # torch's advice to unpickle untrusted bytes
    with pytest.raises(clip.CheckpointError, match='zip archive that is not a whole checkpoint'):
        clip.load(truncated)


def test_foreign_checkpoint_names_missing_keys(tiny_state, tmp_path):
    foreign = tmp_path / 'vit.pt'
    torch.save({'patch_embed.proj.weight': torch.zeros(8, 3, 16, 16)}, foreign)
    with pytest.raises(clip.CheckpointError, match='lacks visual.conv1.weight.*Accepted: '
                                                   "OpenAI's TorchScript archive"):
        clip.load(foreign)
    partial = dict(tiny_state)
    del partial['visual.transformer.resblocks.3.ln_2.bias']
    torch.save(partial, tmp_path / 'partial.pt')
    with pytest.raises(clip.CheckpointError,
                       match='missing keys: visual.transformer.resblocks.3.ln_2.bias'):
        clip.load(tmp_path / 'partial.pt')
    resnet = {'visual.layer1.0.conv1.weight': torch.zeros(1)}
    torch.save(resnet, tmp_path / 'rn50.pt')
    with pytest.raises(clip.CheckpointError, match='ResNet CLIP'):
        clip.load(tmp_path / 'rn50.pt')


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A model 'Tiny/16' published at a file:// URL with the tiny checkpoint's sha256."""
    sha = loader.file_sha256(TINY_CKPT)
    hub = tmp_path / 'hub'
    (hub / sha).mkdir(parents=True)
    shutil.copy(TINY_CKPT, hub / sha / 'Tiny-16.pt')
    monkeypatch.setitem(loader._MODELS, 'Tiny/16', (sha, 'Tiny-16.pt'))
    monkeypatch.setattr(loader, '_BASE_URL', hub.as_uri())
    cache = tmp_path / 'cache'
    monkeypatch.setenv('SFP_CACHE', str(cache))
    return sha, cache


def test_named_model_downloads_once_and_checks_sha256(fake_hub):
    sha, cache = fake_hub
    assert 'Tiny/16' in clip.available_models()
    model = clip.load('Tiny/16')
    assert (cache / 'Tiny-16.pt').is_file()
    assert list(cache.iterdir()) == [cache / 'Tiny-16.pt']  # no temporary left behind
    assert same_weights(model, clip.load(TINY_CKPT))
    clip.load('Tiny/16')  # served from the cache


def test_download_with_wrong_sha256_keeps_nothing(fake_hub, monkeypatch):
    sha, cache = fake_hub
    wrong = '0' * 64
    monkeypatch.setitem(loader._MODELS, 'Tiny/16', (wrong, 'Tiny-16.pt'))
    monkeypatch.setattr(loader, 'model_url', lambda name: loader._BASE_URL + f'/{sha}/Tiny-16.pt')
    with pytest.raises(clip.ChecksumMismatchError, match=f'sha256 is {sha}, expected {wrong}'):
        clip.load('Tiny/16')
    assert not any(cache.iterdir())


def test_cached_file_with_wrong_sha256_is_left_untouched(fake_hub):
    sha, cache = fake_hub
    cache.mkdir(parents=True)
    placed = cache / 'Tiny-16.pt'
    placed.write_bytes(b'user data')
    with pytest.raises(clip.ChecksumMismatchError, match=f'{placed}.*{sha}.*left untouched'):
        clip.load('Tiny/16')
    assert placed.read_bytes() == b'user data'


def test_no_network_says_which_file_to_place_where(fake_hub, monkeypatch):
    _, cache = fake_hub
    monkeypatch.setattr(loader, '_BASE_URL', 'http://127.0.0.1:9/clip')  # refused at once
    with pytest.raises(clip.CheckpointNotFoundError) as info:
        clip.load('Tiny/16')
    message = str(info.value)
    assert 'could not be downloaded' in message and str(cache / 'Tiny-16.pt') in message
    assert 'http://127.0.0.1:9/clip/' in message
