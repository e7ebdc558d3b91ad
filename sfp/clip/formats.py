"""CLIP checkpoint formats, read into one layout: an OpenAI-named state dict and a
:class:`~sfp.clip.model.CLIPConfig` that says everything the weights' shapes cannot.

* OpenAI's TorchScript archives and bare state dicts with OpenAI's key names (open_clip
  ``.pt`` files, training checkpoints under ``state_dict`` with ``module.`` prefixes).  A
  bare file does not say its activation: QuickGELU (OpenAI's) unless the caller says
  ``activation='gelu'``; heads are 64 channels wide.
* Hugging Face transformers folders, as ``CLIPModel.save_pretrained`` writes them:
  ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``.
* open_clip folders, as its Hugging Face hub export writes them: ``open_clip_config.json``
  + ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``.

Options of either library that change the computation and are not implemented here are
refused by name, never ignored.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from .errors import CheckpointError
from .model import ACTIVATIONS, CLIPConfig, infer_config

OPEN_CLIP_CONFIG = 'open_clip_config.json'
OPEN_CLIP_WEIGHTS = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')
HF_CONFIG = 'config.json'
HF_WEIGHTS = ('model.safetensors', 'pytorch_model.bin')
DEFAULT_ACTIVATION = 'quick_gelu'

# Entries of OpenAI's TorchScript state dicts that are not weights.
_NON_WEIGHT_KEYS = ('input_resolution', 'context_length', 'vocab_size')
ACCEPTED_FORMATS = (
    f"OpenAI's TorchScript archive or a state dict with its key names (.pt, .pth, .bin, "
    f".safetensors), a Hugging Face transformers folder ({HF_CONFIG} + "
    f"{' or '.join(HF_WEIGHTS)}), an open_clip folder ({OPEN_CLIP_CONFIG} + "
    f"{' or '.join(OPEN_CLIP_WEIGHTS)}), hf-hub:<org>/<repo>, or an OpenAI model name "
    f"(ViT-B/16 ...)")

StateDict = Dict[str, torch.Tensor]


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else ''


CLIP_FILE_EXAMPLE = "a TorchScript archive like OpenAI's ViT-B-16.pt"


def read_state_dict(path: Union[str, Path], example: str = CLIP_FILE_EXAMPLE) -> StateDict:
    """Weights of a TorchScript archive, a ``.safetensors`` file or a ``torch.save``-d
    state dict (possibly under ``state_dict``/``model``, keys possibly prefixed with
    ``module.``), on the CPU.  ``example`` names the kind of file expected, for the
    error a damaged file gets."""
    path = Path(path)
    try:
        if path.suffix == '.safetensors':
            state_dict = _read_safetensors(path)
        elif zipfile.is_zipfile(path) and any(
                '/code/' in n for n in zipfile.ZipFile(path).namelist()):
            state_dict = torch.jit.load(str(path), map_location='cpu').state_dict()
        else:
            state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:  # torch raises many types for damaged files
        # torch's own text is advice for trusted pickles (weights_only=False) or about its
        # zip reader; neither helps here, so say what the file is not, in our words.
        with open(path, 'rb') as f:
            zipped = f.read(4) == b'PK\x03\x04'  # torch.save and TorchScript write zips
        found = ('a zip archive that is not a whole checkpoint (a truncated download?)'
                 if zipped else 'neither a zip archive nor a tensor file')
        raise CheckpointError(
            f'cannot read {path}: it is damaged or not a checkpoint; it is {found}. Expected '
            f'{example}, a .safetensors file or a state dict saved by torch.save. Download '
            f'it again or give another file') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path} holds a {type(state_dict).__name__}, not a state dict '
                              f'of tensors. Accepted: {ACCEPTED_FORMATS}')
    if state_dict and all(k.startswith('module.') for k in state_dict):  # DDP training
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return {k: v for k, v in state_dict.items() if k not in _NON_WEIGHT_KEYS}


def is_clip_state_dict(state_dict: StateDict) -> bool:
    """Whether a state dict has a CLIP's key names (OpenAI's and open_clip's, or Hugging
    Face transformers')."""
    return any(k.startswith(('visual.', 'vision_model.')) for k in state_dict)


def same_weights(state_dict: StateDict, other: StateDict) -> bool:
    """Whether two state dicts hold the same tensors under the same names (entries that are
    not weights aside), as two reads of one checkpoint do."""
    first, second = ({k: v for k, v in sd.items() if k not in _NON_WEIGHT_KEYS}
                     for sd in (state_dict, other))
    return first.keys() == second.keys() and all(
        v.dtype == second[k].dtype and torch.equal(v, second[k]) for k, v in first.items())


def _read_safetensors(path: Path) -> StateDict:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise CheckpointError(
            f'{path} is a .safetensors file; reading it needs the safetensors package: '
            f'pip install safetensors (or pip install "sfp[hub]")') from err
    return load_file(str(path), device='cpu')


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f'cannot read {path}: {_first_line(err)}') from err
    if not isinstance(config, dict):
        raise CheckpointError(f'{path} holds a JSON {type(config).__name__}, not an object')
    return config


def find_weights(folder: Union[str, Path]) -> Path:
    """The weights file of an open_clip or Hugging Face CLIP folder (open_clip's first
    where a folder has both, as LAION's hub repositories do; safetensors before pickle)."""
    folder = Path(folder)
    for config, weights in ((OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS), (HF_CONFIG, HF_WEIGHTS)):
        if (folder / config).is_file():
            for name in weights:
                if (folder / name).is_file():
                    return folder / name
            sharded = sorted(p.name for p in folder.glob('*.index.json'))
            raise CheckpointError(
                f'{folder} has {config} but no {" or ".join(weights)}'
                + (f' (sharded weights, {sharded[0]}, are not supported: save them as one '
                   f'file)' if sharded else ''))
    raise CheckpointError(
        f'{folder} is not a CLIP checkpoint folder: expected {OPEN_CLIP_CONFIG} with '
        f'{" or ".join(OPEN_CLIP_WEIGHTS)} (open_clip), or {HF_CONFIG} with '
        f'{" or ".join(HF_WEIGHTS)} (Hugging Face transformers)')


def checkpoint_format(path: Union[str, Path]) -> str:
    """'open_clip', 'hf' or 'bare': a weights file is read as its folder's format when it
    carries that format's file name and the folder holds the matching config."""
    path = Path(path)
    if path.name in OPEN_CLIP_WEIGHTS and (path.parent / OPEN_CLIP_CONFIG).is_file():
        return 'open_clip'
    if path.name in HF_WEIGHTS and (path.parent / HF_CONFIG).is_file():
        return 'hf'
    return 'bare'


def read_checkpoint(path: Union[str, Path], activation: Optional[str] = None
                    ) -> Tuple[StateDict, CLIPConfig]:
    """OpenAI-named weights and the architecture of the checkpoint at ``path`` (a weights
    file or a folder).

    ``activation`` ('quick_gelu', 'gelu', 'gelu_tanh') is what a bare state dict cannot
    tell (default QuickGELU); for folders it comes from their config, and a different
    ``activation`` is an error rather than a silent override.
    """
    path = Path(path)
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {", ".join(ACTIVATIONS)}, got '
                         f'{activation!r}')
    if path.is_dir():
        path = find_weights(path)
    kind = checkpoint_format(path)
    state_dict = read_state_dict(path)
    if kind == 'bare':
        if any(k.startswith(('vision_model.', 'text_model.')) for k in state_dict):
            raise CheckpointError(
                f'{path} has Hugging Face transformers key names (vision_model..., '
                f'text_model...) but no {HF_CONFIG} beside it: pass the folder that '
                f'CLIPModel.save_pretrained wrote (config.json + model.safetensors)')
        _refuse_vision_foundation_model(state_dict, path)
        act = activation or DEFAULT_ACTIVATION
        settings = dict(vision_activation=act, text_activation=act)
        return state_dict, infer_config(state_dict, str(path), **settings)
    if kind == 'hf':
        config_path = path.parent / HF_CONFIG
        state_dict, settings = convert_hf(_read_json(config_path), state_dict, config_path)
    else:
        config_path = path.parent / OPEN_CLIP_CONFIG
        settings = open_clip_settings(_read_json(config_path), state_dict, config_path)
    if activation is not None:
        for tower in ('vision', 'text'):
            if settings[f'{tower}_activation'] != activation:
                raise ValueError(
                    f'activation={activation!r} contradicts {config_path}, whose {tower} '
                    f'tower uses {settings[f"{tower}_activation"]!r}; leave activation '
                    f'unset for checkpoints that carry their config')
    return state_dict, infer_config(state_dict, str(path), **settings)


def _refuse_vision_foundation_model(state_dict: StateDict, path: Path) -> None:
    """A clear error for a VFM checkpoint (DINO ...) given where a CLIP is expected."""
    if is_clip_state_dict(state_dict):
        return
    from ..vfm.loader import describe_vfm_state_dict  # sfp.vfm builds on sfp.clip

    what = describe_vfm_state_dict(state_dict)
    if what:
        raise CheckpointError(
            f'{path} is a {what} checkpoint, a vision foundation model, not a CLIP: give it '
            f'as vfm_path (methods that read one: ProxyCLIP, CASS) and a CLIP as clip_path')


# -- Hugging Face transformers ------------------------------------------------------------
# transformers' activation names -> ours.  'gelu_new' and 'gelu_pytorch_tanh' are both
# GELU's tanh approximation (the same formula, evaluated in two ways).
_HF_ACTIVATIONS = {'quick_gelu': 'quick_gelu', 'gelu': 'gelu',
                   'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_new': 'gelu_tanh'}
# What save_pretrained leaves out of config.json when it equals the class default
# (transformers' CLIPTextConfig / CLIPVisionConfig defaults).
_HF_DEFAULTS = {
    'text_config': dict(hidden_act='quick_gelu', layer_norm_eps=1e-5, num_attention_heads=8,
                        eos_token_id=49407),
    'vision_config': dict(hidden_act='quick_gelu', layer_norm_eps=1e-5,
                          num_attention_heads=12),
}
# HF name (after the tower prefix) -> OpenAI name, inside a transformer block.
_HF_BLOCK_KEYS = {'self_attn.out_proj': 'attn.out_proj', 'layer_norm1': 'ln_1',
                  'layer_norm2': 'ln_2', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj'}


def _hf_tower(config: dict, name: str, source: Path) -> dict:
    tower = {**_HF_DEFAULTS[name], **(config.get(name) or {})}
    act = tower['hidden_act']
    if act not in _HF_ACTIVATIONS:
        raise CheckpointError(f'{source}: {name}.hidden_act = {act!r} is not supported '
                              f'(supported: {", ".join(_HF_ACTIVATIONS)})')
    tower['activation'] = _HF_ACTIVATIONS[act]
    return tower


def convert_hf(config: dict, state_dict: StateDict, source: Path
               ) -> Tuple[StateDict, dict]:
    """A transformers ``CLIPModel`` state dict in OpenAI's layout (q, k, v projections
    concatenated into ``in_proj``, Linear projections transposed), and the
    :class:`CLIPConfig` settings its ``config.json`` gives."""
    if config.get('model_type') != 'clip':
        raise CheckpointError(
            f'{source} describes a {config.get("model_type")!r} model; a transformers '
            f'CLIPModel (model_type "clip") was expected')
    text = _hf_tower(config, 'text_config', source)
    vision = _hf_tower(config, 'vision_config', source)
    eos = text['eos_token_id']
    if not isinstance(eos, int):
        raise CheckpointError(f'{source}: text_config.eos_token_id = {eos!r}; one integer '
                              f'id was expected')
    out: StateDict = {}
    rest = {k: v for k, v in state_dict.items() if not k.endswith('embeddings.position_ids')}

    def take(key: str) -> torch.Tensor:
        if key not in rest:
            raise CheckpointError(f'{source.parent}: the weights lack {key}, which a '
                                  f'transformers CLIPModel has')
        return rest.pop(key)

    for hf, ours in (('text_model', ''), ('vision_model', 'visual.')):
        layers = {int(k.split('.')[3]) for k in rest if k.startswith(f'{hf}.encoder.layers.')}
        for i in sorted(layers):
            src, dst = f'{hf}.encoder.layers.{i}.', f'{ours}transformer.resblocks.{i}.'
            for kind in ('weight', 'bias'):
                out[f'{dst}attn.in_proj_{kind}'] = torch.cat(
                    [take(f'{src}self_attn.{p}_proj.{kind}') for p in 'qkv'])
                for hf_name, name in _HF_BLOCK_KEYS.items():
                    out[f'{dst}{name}.{kind}'] = take(f'{src}{hf_name}.{kind}')
    out['token_embedding.weight'] = take('text_model.embeddings.token_embedding.weight')
    out['positional_embedding'] = take('text_model.embeddings.position_embedding.weight')
    out['visual.conv1.weight'] = take('vision_model.embeddings.patch_embedding.weight')
    out['visual.class_embedding'] = take('vision_model.embeddings.class_embedding')
    out['visual.positional_embedding'] = take(
        'vision_model.embeddings.position_embedding.weight')
    for hf, ours in (('text_model.final_layer_norm', 'ln_final'),
                     ('vision_model.pre_layrnorm', 'visual.ln_pre'),
                     ('vision_model.post_layernorm', 'visual.ln_post')):
        for kind in ('weight', 'bias'):
            out[f'{ours}.{kind}'] = take(f'{hf}.{kind}')
    out['visual.proj'] = take('visual_projection.weight').t().contiguous()
    out['text_projection'] = take('text_projection.weight').t().contiguous()
    out['logit_scale'] = take('logit_scale')
    if rest:
        raise CheckpointError(f'{source.parent}: weights a transformers CLIPModel does not '
                              f'have: {", ".join(sorted(rest)[:8])}')
    width = out['visual.conv1.weight'].shape[0]
    heads = vision['num_attention_heads']
    if width % heads:
        raise CheckpointError(f'{source}: vision width {width} is not divisible by '
                              f'num_attention_heads {heads}')
    settings = dict(
        vision_head_width=width // heads, transformer_heads=text['num_attention_heads'],
        vision_activation=vision['activation'], text_activation=text['activation'],
        vision_eps=vision['layer_norm_eps'], text_eps=text['layer_norm_eps'],
        # transformers keeps argmax pooling for configs that predate the real eos id (2).
        text_eos_id=None if eos == 2 else eos)
    return out, settings


# -- open_clip -------------------------------------------------------------------------
# Options of open_clip's CLIPVisionCfg / CLIPTextCfg (and the model config) that change
# what is computed, with the one value implemented here.  Any other key must be one of
# the harmless ones below; an unknown key is refused too.
_OPEN_CLIP_FIXED = {
    'model': dict(custom_text=False, init_logit_bias=None, nonscalar_logit_scale=False,
                  multimodal_cfg=None),
    'vision_cfg': dict(
        ls_init_value=None, attentional_pool=False, no_ln_pre=False,
        pos_embed_type='learnable', final_ln_after_pool=False, pool_type='tok',
        act_kwargs=None, block_type=None, qk_norm=False, scaled_cosine_attn=False,
        scale_heads=False, scale_attn_inner=False, scale_attn=False, scale_fc=False,
        timm_model_name=None),
    'text_cfg': dict(
        ls_init_value=None, embed_cls=False, no_causal_mask=False, proj_bias=False,
        proj_type='linear', act_kwargs=None, block_type=None, qk_norm=False,
        scaled_cosine_attn=False, scale_heads=False, scale_attn_inner=False,
        scale_attn=False, scale_fc=False, hf_model_name=None, hf_tokenizer_name=None,
        tokenizer_mode=None, tokenizer_kwargs=None),
}
# Keys that set sizes (read from the weights' shapes and checked there), only matter in
# training, or only matter together with a refused option.
_OPEN_CLIP_FREE = {
    'model': {'embed_dim', 'quick_gelu', 'vision_cfg', 'text_cfg', 'cast_dtype',
              'output_dict', 'init_logit_scale'},
    'vision_cfg': {'layers', 'width', 'head_width', 'mlp_ratio', 'patch_size', 'image_size',
                   'patch_dropout', 'output_tokens', 'norm_kwargs', 'attn_pooler_queries',
                   'attn_pooler_heads', 'timm_model_pretrained', 'timm_pool', 'timm_proj',
                   'timm_proj_bias', 'timm_drop', 'timm_drop_path'},
    'text_cfg': {'context_length', 'vocab_size', 'width', 'heads', 'layers', 'mlp_ratio',
                 'pad_id', 'eos_id', 'final_ln_after_pool', 'pool_type', 'output_tokens',
                 'norm_kwargs', 'hf_model_pretrained', 'hf_proj_type', 'hf_pooler_type'},
}


def _check_open_clip_section(section: dict, name: str, source: Path) -> None:
    where = '' if name == 'model' else f'{name}.'
    for key, value in section.items():
        if key in _OPEN_CLIP_FIXED[name]:
            expected = _OPEN_CLIP_FIXED[name][key]
            if value != expected and not (key == 'block_type' and value == 'default'):
                raise CheckpointError(
                    f'{source}: model_cfg.{where}{key} = {value!r} changes the computation '
                    f'and is not implemented by sfp.clip (only {expected!r} is)')
        elif key not in _OPEN_CLIP_FREE[name]:
            raise CheckpointError(f'{source}: model_cfg.{where}{key} is an open_clip option '
                                  f'sfp.clip does not know; refusing rather than ignoring it')
    norm = section.get('norm_kwargs') or {}
    if set(norm) - {'eps'}:
        raise CheckpointError(f'{source}: model_cfg.{where}norm_kwargs = {norm!r}: only eps '
                              f'is implemented')


def open_clip_settings(config: dict, state_dict: StateDict, source: Path) -> dict:
    """The :class:`CLIPConfig` settings of an open_clip ``open_clip_config.json``."""
    model_cfg = config.get('model_cfg')
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f'{source} has no model_cfg object (an open_clip hub config '
                              f'was expected)')
    vision = model_cfg.get('vision_cfg') or {}
    text = model_cfg.get('text_cfg') or {}
    if isinstance(vision.get('layers'), (list, tuple)):
        raise CheckpointError(f'{source} is a ResNet CLIP; SFP works on the patch tokens of '
                              f'a ViT CLIP')
    for name, section in (('model', model_cfg), ('vision_cfg', vision), ('text_cfg', text)):
        _check_open_clip_section(section, name, source)
    pool = text.get('pool_type', 'argmax')
    if pool not in ('argmax', 'eos'):
        raise CheckpointError(f'{source}: model_cfg.text_cfg.pool_type = {pool!r} is not '
                              f'implemented (argmax and eos are)')
    width = state_dict['visual.conv1.weight'].shape[0] if 'visual.conv1.weight' in \
        state_dict else vision.get('width', 768)
    head_width = vision.get('head_width', 64)
    if width % head_width:
        raise CheckpointError(f'{source}: vision width {width} is not divisible by '
                              f'head_width {head_width}')
    act = 'quick_gelu' if model_cfg.get('quick_gelu', False) else 'gelu'
    return dict(
        vision_head_width=head_width, transformer_heads=text.get('heads', 8),
        vision_activation=act, text_activation=act,
        vision_eps=(vision.get('norm_kwargs') or {}).get('eps', 1e-5),
        text_eps=(text.get('norm_kwargs') or {}).get('eps', 1e-5),
        text_eos_id=text.get('eos_id', 2) if pool == 'eos' else None)
