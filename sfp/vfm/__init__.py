"""Vision foundation models read beside CLIP (DINO; the contract others follow)."""
from .dino import IMAGENET_MEAN, IMAGENET_STD, DINOVisionTransformer
from .interface import VFMTower, check_vfm_tower

__all__ = ['DINOVisionTransformer', 'IMAGENET_MEAN', 'IMAGENET_STD', 'VFMTower',
           'check_vfm_tower']
