"""CLIP for SFP: the CLIP ViT architecture, tokenizer and checkpoint loader (OpenAI, Hugging
Face transformers and open_clip checkpoints)."""
from .errors import (
                     CheckpointError,
                     CheckpointNotFoundError,
                     ChecksumMismatchError,
                     UnknownModelError,
)
from .formats import (
                     ACCEPTED_FORMATS,
                     is_clip_state_dict,
                     read_checkpoint,
                     read_state_dict,
                     same_weights,
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
                     resolve_checkpoint,
)
from .model import (
                     ACTIVATIONS,
                     CLIP,
                     CLIPConfig,
                     VisionTransformer,
                     infer_config,
                     resize_patch_pos_embed,
)
from .tokenizer import SimpleTokenizer, tokenize

__all__ = [
    'ACCEPTED_FORMATS', 'ACTIVATIONS', 'ARCHITECTURES', 'CLIP', 'CLIPConfig', 'CheckpointError',
    'CheckpointNotFoundError', 'ChecksumMismatchError', 'PRECISIONS', 'SimpleTokenizer',
    'UnknownModelError', 'VisionTransformer', 'available_models', 'build_model', 'cache_dir',
    'infer_config', 'load', 'precision_dtype', 'random_model', 'read_checkpoint',
    'is_clip_state_dict', 'read_state_dict', 'resize_patch_pos_embed', 'resolve_checkpoint',
    'same_weights', 'tokenize'
]
