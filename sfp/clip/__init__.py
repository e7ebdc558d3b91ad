"""CLIP for SFP: the OpenAI architecture, tokenizer and checkpoint loader."""
from .errors import (
                     CheckpointError,
                     CheckpointNotFoundError,
                     ChecksumMismatchError,
                     UnknownModelError,
)
from .loader import (
                     ARCHITECTURES,
                     PRECISIONS,
                     available_models,
                     build_model,
                     cache_dir,
                     load,
                     precision_dtype,
                     random_model,
                     read_state_dict,
                     resolve_checkpoint,
)
from .model import CLIP, CLIPConfig, VisionTransformer, infer_config, resize_patch_pos_embed
from .tokenizer import SimpleTokenizer, tokenize

__all__ = [
    'ARCHITECTURES', 'CLIP', 'CLIPConfig', 'CheckpointError', 'CheckpointNotFoundError',
    'ChecksumMismatchError', 'PRECISIONS', 'SimpleTokenizer', 'UnknownModelError',
    'VisionTransformer', 'available_models', 'build_model', 'cache_dir', 'infer_config', 'load',
    'precision_dtype', 'random_model', 'read_state_dict', 'resize_patch_pos_embed',
    'resolve_checkpoint', 'tokenize'
]
