"""Vision foundation models read beside CLIP (DINO, the contract others follow;
DINOv2; SAM's image encoder) and their loader."""
from .dino import DINO_MODELS, IMAGENET_MEAN, IMAGENET_STD, DINOVisionTransformer
from .dinov2 import DINOV2_MODELS, DINOv2VisionTransformer
from .interface import PublishedVFM, VFMFormat, VFMTower, check_vfm_tower
from .loader import (
                  available_vfms,
                  build_vfm,
                  describe_vfm_state_dict,
                  load_vfm,
                  random_vfm,
                  resolve_vfm_checkpoint,
)
from .sam import (
                  SAM_MODELS,
                  SAMImageEncoder,
                  build_sam_image_encoder,
                  is_sam_state_dict,
                  load_sam_state_dict,
)
from .sam_decoder import (
                          SAM,
                          SAMMaskDecoder,
                          SAMPromptDecoder,
                          SAMPromptEncoder,
                          load_sam,
                          random_sam,
)

__all__ = ['DINOVisionTransformer', 'DINO_MODELS', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'PublishedVFM', 'VFMFormat', 'VFMTower', 'available_vfms', 'build_vfm',
           'check_vfm_tower', 'describe_vfm_state_dict', 'load_vfm', 'random_vfm',
           'resolve_vfm_checkpoint', 'SAM_MODELS', 'SAMImageEncoder',
           'build_sam_image_encoder', 'is_sam_state_dict', 'load_sam_state_dict',
           'DINOV2_MODELS', 'DINOv2VisionTransformer', 'SAM', 'SAMMaskDecoder',
           'SAMPromptDecoder', 'SAMPromptEncoder', 'load_sam', 'random_sam']
