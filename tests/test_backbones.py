"""Backbones beyond OpenAI's files, checked against the libraries that define them.

Small random CLIPs with non-default sizes (heads 12, 16, 20 and 30 channels wide, MLPs
that are not 4x wide, LayerNorm eps other than 1e-5, randomised LayerNorm weights) are
built by Hugging Face transformers and open_clip, saved by those libraries' own save
functions, loaded by ``sfp.clip.load`` and compared with the libraries' own fp64 outputs:
image and text embeddings, logit scale and the projected patch tokens.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

import sfp
from sfp import clip
from sfp.clip.interface import check_visual_tower

TOL = 1e-9
IMAGE_SIZE, PATCH = 40, 8  # a 5 x 5 patch grid
TEXTS = ['a photo of a cat', 'a diagram of a bridge at night', 'x']


# open_clip, torchvision and transformers sit apart from the environment's packages (see
# requirements-reference.txt); elsewhere they may be installed as usual.
REFERENCE_LIBS = Path(sys.prefix) / 'reference-libs'


def _import_open_clip():
    """open_clip, whose modules import torchvision's Python parts (transforms,
    ops.misc).  PyPI's torchvision wheel is a CUDA build: beside the CPU torch here its
    C++ ops library cannot load, and torchvision's import then stops only at registering
    fake (meta) kernels for its nms and qnms ops.  Declaring those two operator schemas
    lets it import; the ops are never called and nothing of CLIP goes through them."""
    if REFERENCE_LIBS.is_dir():
        sys.path.insert(0, str(REFERENCE_LIBS))
    spec = importlib.util.find_spec('torchvision')
    libraries = sorted(Path(spec.submodule_search_locations[0]).glob('_C*.so')) if spec else []
    try:
        torch.ops.load_library(str(libraries[0]))
    except (IndexError, OSError):
        for op in ('nms', 'qnms'):
            torch.library.define(f'torchvision::{op}',
                                 '(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    import open_clip

    return open_clip


open_clip = _import_open_clip()
transformers = importlib.import_module('transformers')


def randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (LayerNorm weights around 1), in float64."""
    generator = torch.Generator().manual_seed(seed)
    model.double()
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            if 'norm' in name or '.ln' in name or name.startswith('ln'):
                param.copy_((1.0 if name.endswith('weight') else 0.0) + 0.2 * noise)
            elif name.endswith('logit_scale'):
                param.fill_(2.3 + 0.1 * noise.item())
            else:
                param.copy_(noise * (param.shape[-1] if param.dim() > 1 else 16) ** -0.5)
    return model.eval()


def inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator,
                         dtype=torch.float64)
    return images, clip.tokenize(TEXTS)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == torch.float64
    assert (ours - theirs).abs().max().item() <= TOL * max(1.0, theirs.abs().max().item())


def assert_same_as(model: clip.CLIP, image_features, text_features, logit_scale,
                   patch_features):
    images, tokens = inputs()
    with torch.no_grad():
        assert_close(model.encode_image(images), image_features(images))
        assert_close(model.encode_text(tokens), text_features(tokens))
        assert_close(model.logit_scale, logit_scale.detach())
        patches = model.visual.patch_features(images)
        assert patches.shape == (2, (IMAGE_SIZE // PATCH) ** 2, model.config.embed_dim)
        assert_close(patches, patch_features(images))


# -- Hugging Face transformers -----------------------------------------------------------
def hf_model(vision_act='gelu', text_act='quick_gelu', eos_token_id=49407, seed=0,
             vision_layers=3):
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=48, intermediate_size=80,
                         num_hidden_layers=2, num_attention_heads=3,
                         max_position_embeddings=77, hidden_act=text_act,
                         layer_norm_eps=1e-6, eos_token_id=eos_token_id),
        vision_config=dict(hidden_size=60, intermediate_size=100,
                           num_hidden_layers=vision_layers, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=PATCH, hidden_act=vision_act,
                           layer_norm_eps=1e-4),
        projection_dim=24)
    return randomise_(transformers.CLIPModel(config), seed)


def hf_reference(model):
    """The library's outputs; patch tokens go through the same post_layernorm and
    visual_projection that it applies to the CLS token."""
    def patch_features(images):
        hidden = model.vision_model(pixel_values=images).last_hidden_state
        return model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:]))

    return dict(
        image_features=lambda images: model.get_image_features(pixel_values=images)
        .pooler_output,
        text_features=lambda tokens: model.get_text_features(input_ids=tokens).pooler_output,
        logit_scale=model.logit_scale, patch_features=patch_features)


@pytest.mark.parametrize('vision_act,text_act,eos_token_id', [
    ('gelu', 'quick_gelu', 49407),
    ('quick_gelu', 'gelu', 2),  # old configs: transformers pools at the largest token id
    ('gelu_pytorch_tanh', 'gelu_new', 49407),
])
def test_hf_folder_computes_what_transformers_computes(tmp_path, vision_act, text_act,
                                                       eos_token_id):
    model = hf_model(vision_act, text_act, eos_token_id)
    model.save_pretrained(tmp_path)
    assert (tmp_path / 'model.safetensors').is_file()
    ours = clip.load(tmp_path, precision='fp64')
    assert (ours.visual.heads, ours.visual.width, ours.config.transformer_heads) == (2, 60, 3)
    check_visual_tower(ours.visual)
    assert_same_as(ours, **hf_reference(model))


def test_hf_pickle_folder_with_old_position_ids(tmp_path):
    """The layout of older hub folders (openai/clip-vit-base-patch16): pytorch_model.bin
    with the position_ids buffers transformers 4 saved; transformers 5 writes only
    safetensors, so the pickle is written by torch.save and checked by transformers."""
    model = hf_model()
    model.config.save_pretrained(tmp_path)
    state = model.state_dict()
    for tower in ('text_model', 'vision_model'):
        positions = model.get_submodule(f'{tower}.embeddings').position_embedding.num_embeddings
        state[f'{tower}.embeddings.position_ids'] = torch.arange(positions)[None]
    torch.save(state, tmp_path / 'pytorch_model.bin')
    reloaded = transformers.CLIPModel.from_pretrained(tmp_path, dtype=torch.float64).eval()
    ours = clip.load(tmp_path / 'pytorch_model.bin', precision='fp64')
    assert_same_as(ours, **hf_reference(reloaded))
    assert_same_as(ours, **hf_reference(model))


def test_hf_unsupported_activation_is_refused_by_name(tmp_path):
    hf_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    config['vision_config']['hidden_act'] = 'relu'
    (tmp_path / 'config.json').write_text(json.dumps(config))
    with pytest.raises(clip.CheckpointError, match="vision_config.hidden_act = 'relu'"):
        clip.load(tmp_path)


def test_hf_folder_of_another_model_type(tmp_path):
    hf_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    config['model_type'] = 'siglip'
    (tmp_path / 'config.json').write_text(json.dumps(config))
    with pytest.raises(clip.CheckpointError, match="'siglip' model.*CLIPModel"):
        clip.load(tmp_path)


def test_hf_weights_without_their_config(tmp_path):
    hf_model().save_pretrained(tmp_path)
    (tmp_path / 'config.json').unlink()
    with pytest.raises(clip.CheckpointError, match='Hugging Face transformers key names.*'
                                                   'config.json'):
        clip.load(tmp_path / 'model.safetensors')


# -- open_clip -------------------------------------------------------------------------
def open_clip_config(quick_gelu: bool) -> dict:
    return dict(
        embed_dim=24, quick_gelu=quick_gelu,
        vision_cfg=dict(image_size=IMAGE_SIZE, patch_size=PATCH, layers=3, width=60,
                        head_width=20, mlp_ratio=2.5, norm_kwargs=dict(eps=1e-6)),
        text_cfg=dict(context_length=77, vocab_size=49408, width=48, heads=4, layers=2,
                      mlp_ratio=3.0, norm_kwargs=dict(eps=1e-4)))


class UnusedTokenizer:
    """save_for_hf also saves a tokenizer; sfp.clip reads none (it tokenizes with
    OpenAI's BPE), so none is written."""

    def save_pretrained(self, directory):
        pass


def open_clip_model(quick_gelu: bool, folder: Path, seed: int = 0, config=None):
    """A random model built by open_clip's factory from a config file in ``folder``."""
    config = config or open_clip_config(quick_gelu)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'open_clip_config.json').write_text(json.dumps({'model_cfg': config}))
    model = open_clip.create_model(f'local-dir:{folder}')
    return randomise_(model, seed), config


def open_clip_reference(model):
    def patch_features(images):
        model.visual.output_tokens = True
        try:
            _, tokens = model.visual(images)  # after ln_post, before the projection
        finally:
            model.visual.output_tokens = False
        return tokens @ model.visual.proj

    return dict(image_features=model.encode_image, text_features=model.encode_text,
                logit_scale=model.logit_scale, patch_features=patch_features)


def save_open_clip(model, config, folder: Path) -> Path:
    from open_clip.push_to_hf_hub import save_for_hf

    save_for_hf(model, UnusedTokenizer(), config, folder)  # safetensors and pickle
    return folder


@pytest.mark.parametrize('quick_gelu', [False, True])
def test_open_clip_folder_computes_what_open_clip_computes(tmp_path, quick_gelu):
    model, config = open_clip_model(quick_gelu, tmp_path / 'build')
    folder = save_open_clip(model, config, tmp_path / 'export')
    reference = open_clip_reference(model)
    ours = clip.load(folder, precision='fp64')  # the safetensors file
    assert (ours.visual.heads, ours.config.transformer_heads) == (3, 4)
    act = 'quick_gelu' if quick_gelu else 'gelu'
    assert (ours.config.vision_activation, ours.config.text_activation) == (act, act)
    check_visual_tower(ours.visual)
    assert_same_as(ours, **reference)
    assert_same_as(clip.load(folder / 'open_clip_pytorch_model.bin', precision='fp64'),
                   **reference)


@pytest.mark.parametrize('wrapped', [False, True])
def test_bare_state_dict_needs_its_activation(tmp_path, wrapped):
    """open_clip's LAION / DataComp weights use exact GELU under OpenAI's key names: a
    bare file loads either way, and only activation='gelu' computes the right thing.
    (Bare files assume OpenAI's 64-wide heads and eps 1e-5, as this model has.)"""
    config = dict(embed_dim=24, quick_gelu=False,
                  vision_cfg=dict(image_size=IMAGE_SIZE, patch_size=PATCH, layers=2,
                                  width=128),
                  text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1,
                                layers=2))
    model, _ = open_clip_model(False, tmp_path / 'build', seed=3, config=config)
    path = tmp_path / 'open_clip_vit.pt'
    state = model.state_dict()
    if wrapped:  # a training checkpoint, with DistributedDataParallel's prefixes
        state = {'epoch': 1, 'name': 'run', 'state_dict': {
            f'module.{k}': v for k, v in state.items()}}
    torch.save(state, path)
    ours = clip.load(path, precision='fp64', activation='gelu')
    assert ours.visual.heads == 2
    assert_same_as(ours, **open_clip_reference(model))
    default = clip.load(path, precision='fp64')
    assert default.config.vision_activation == 'quick_gelu'  # OpenAI's
    images, _ = inputs()
    with torch.no_grad():
        error = (default.encode_image(images) - model.encode_image(images)).abs().max()
    assert error > 1e-3  # what a bare file with the wrong activation silently gives


@pytest.mark.parametrize('section,key,value', [
    ('vision_cfg', 'ls_init_value', 1e-4),
    ('vision_cfg', 'attentional_pool', True),
    ('vision_cfg', 'timm_model_name', 'vit_base_patch16_224'),
    ('vision_cfg', 'final_ln_after_pool', True),
    ('vision_cfg', 'pool_type', 'avg'),
    ('vision_cfg', 'no_ln_pre', True),
    ('text_cfg', 'hf_model_name', 'xlm-roberta-base'),
    ('text_cfg', 'embed_cls', True),
    ('text_cfg', 'hf_tokenizer_name', 'timm/ViT-B-16-SigLIP'),
    ('model', 'init_logit_bias', -10.0),
    ('vision_cfg', 'an_option_from_the_future', 1),
])
def test_open_clip_options_that_change_the_computation_are_refused(tmp_path, section, key,
                                                                   value):
    model, config = open_clip_model(False, tmp_path / 'build')
    config = copy.deepcopy(config)
    (config if section == 'model' else config[section])[key] = value
    save_open_clip(model, config, tmp_path / 'export')
    where = key if section == 'model' else f'{section}.{key}'
    with pytest.raises(clip.CheckpointError, match=rf'model_cfg\.{where}'):
        clip.load(tmp_path / 'export')


def test_activation_contradicting_a_folder_config(tmp_path):
    model, config = open_clip_model(True, tmp_path / 'build')
    save_open_clip(model, config, tmp_path / 'export')
    with pytest.raises(ValueError, match="activation='gelu' contradicts.*'quick_gelu'"):
        clip.load(tmp_path / 'export', activation='gelu')


def test_checkpoint_of_no_known_format_names_what_was_expected(tmp_path):
    path = tmp_path / 'weights.pt'
    torch.save({'encoder.layer.0.weight': torch.zeros(2)}, path)
    with pytest.raises(clip.CheckpointError) as refused:
        clip.load(path)
    message = str(refused.value)
    assert '\n' not in message and f'{path} is in no CLIP format' in message
    assert 'lacks visual.conv1.weight' in message and 'encoder.layer.0.weight' in message
    for accepted in ("OpenAI's TorchScript archive or a state dict", 'transformers folder',
                     'config.json + model.safetensors or pytorch_model.bin', 'open_clip folder',
                     'open_clip_config.json + open_clip_model.safetensors', 'hf-hub:<org>/<repo>'):
        assert accepted in message, accepted
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(clip.CheckpointNotFoundError, match='config.json but no '
                                                           'model.safetensors'):
        clip.load(tmp_path)


# -- hf-hub names ------------------------------------------------------------------------
class FakeHub:
    """huggingface_hub.snapshot_download serving a local folder as the remote repository:
    it copies the files matching allow_patterns into a snapshot folder and returns it."""

    def __init__(self, remote: Path, cache: Path):
        self.remote, self.cache, self.requested = remote, cache, []

    def __call__(self, repo_id, allow_patterns=(), cache_dir=None, tqdm_class=None):
        self.requested.append(list(allow_patterns))
        snapshot = self.cache / repo_id.replace('/', '--')
        snapshot.mkdir(parents=True, exist_ok=True)
        for file in self.remote.iterdir():
            if any(fnmatch(file.name, p) for p in allow_patterns):
                shutil.copy(file, snapshot / file.name)
        return str(snapshot)


def test_hf_hub_name_downloads_one_format(tmp_path, monkeypatch):
    """A LAION-style repository with both formats: the open_clip config and safetensors
    are downloaded, nothing else."""
    import huggingface_hub

    remote = tmp_path / 'remote'
    model, config = open_clip_model(False, tmp_path / 'build')
    save_open_clip(model, config, remote)
    hf_model().save_pretrained(remote)  # the repository's transformers copy
    hub = FakeHub(remote, tmp_path / 'hub_cache')
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', hub)
    name = 'hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K'
    weights = clip.resolve_checkpoint(name)
    assert weights.name == 'open_clip_model.safetensors'
    assert sorted(p.name for p in weights.parent.iterdir()) == [
        'config.json', 'open_clip_config.json', 'open_clip_model.safetensors']
    assert_same_as(clip.load(name, precision='fp64'), **open_clip_reference(model))


def test_hf_hub_transformers_repository(tmp_path, monkeypatch):
    import huggingface_hub

    remote = tmp_path / 'remote'
    model = hf_model()
    model.save_pretrained(remote)
    monkeypatch.setattr(huggingface_hub, 'snapshot_download',
                        FakeHub(remote, tmp_path / 'hub_cache'))
    ours = clip.load('hf-hub:openai/clip-vit-base-patch16', precision='fp64')
    assert_same_as(ours, **hf_reference(model))


def test_hf_hub_offline_message(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs):
        raise LocalEntryNotFoundError('Cannot find the requested files in the disk cache and '
                                      'outgoing traffic has been disabled.')

    monkeypatch.setattr(huggingface_hub, 'snapshot_download', offline)
    with pytest.raises(clip.CheckpointNotFoundError) as info:
        clip.load('hf-hub:openai/clip-vit-base-patch16')
    message = str(info.value)
    assert 'hf-hub:openai/clip-vit-base-patch16 is not in the Hugging Face cache' in message
    assert 'https://huggingface.co/openai/clip-vit-base-patch16' in message
    assert 'pass the folder as clip_path' in message


def test_hf_hub_repository_without_clip_files(tmp_path, monkeypatch):
    import huggingface_hub

    remote = tmp_path / 'remote'
    remote.mkdir()
    (remote / 'README.md').write_text('not a model')
    monkeypatch.setattr(huggingface_hub, 'snapshot_download',
                        FakeHub(remote, tmp_path / 'hub_cache'))
    with pytest.raises(clip.CheckpointNotFoundError, match='no CLIP checkpoint.*'
                                                           'open_clip_config.json'):
        clip.load('hf-hub:someone/a-text-model')


# -- model bases -------------------------------------------------------------------------
BACKBONE_BASES = {
    'sfp_vit-b16-laion2b.py': ('hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K', 'sfp_vit-b16.py'),
    'sfp_vit-l14-laion2b.py': ('hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K', 'sfp_vit-l14.py'),
    'sfp_vit-l14-datacomp.py': ('hf-hub:laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K',
                                'sfp_vit-l14.py'),
    'sfp_vit-b16-metaclip.py': ('hf-hub:facebook/metaclip-b16-fullcc2.5b', 'sfp_vit-b16.py'),
    'sfp_vit-b16-hf-openai.py': ('hf-hub:openai/clip-vit-base-patch16', 'sfp_vit-b16.py'),
}


@pytest.mark.parametrize('name', sorted(BACKBONE_BASES))
def test_backbone_model_bases(name):
    """Each base changes only clip_path of the ViT-B/16 (or ViT-L/14) base."""
    from mmengine.config import Config

    folder = Path(__file__).resolve().parents[1] / 'configs' / '_base_' / 'models'
    clip_path, parent = BACKBONE_BASES[name]
    model = Config.fromfile(folder / name).model.to_dict()
    parent_model = Config.fromfile(folder / parent).model.to_dict()
    assert model.pop('clip_path') == clip_path
    parent_model.pop('clip_path')
    assert model == parent_model


# -- the method on another backbone ------------------------------------------------------
def test_segmentor_runs_unchanged_on_a_transformers_backbone(tmp_path):
    """SFP's method code reaches the tower only through sfp.clip.interface, so a GELU
    backbone with 30-wide heads needs no change to it."""
    hf_model(vision_layers=12).save_pretrained(tmp_path)
    seg = sfp.SFPSegmentor(clip_path=str(tmp_path), name_path=[['cat'], ['dog'], ['sky']],
                           device='cpu', precision='fp64', slide_crop=48, slide_stride=24)
    visual = seg.encoder.visual
    assert isinstance(visual.blocks[0].mlp.gelu, torch.nn.GELU) and visual.heads == 2
    image = torch.randn(1, 3, 64, 80, dtype=torch.float64)
    out = seg.predict(image)[0]
    assert out.seg_logits.data.shape == (3, 64, 80)
    assert torch.isfinite(out.seg_logits.data).all()


def test_a_tower_missing_part_of_the_contract_is_named():
    visual = clip.random_model('ViT-B/32').visual
    check_visual_tower(visual)
    del visual.blocks[3].attn.out_proj
    with pytest.raises(TypeError, match='MultiheadSelfAttention does not honour Attention: '
                                        'no out_proj'):
        check_visual_tower(visual)
