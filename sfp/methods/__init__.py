"""Methods: one image encoder per method, registered in :data:`sfp.registry.ENCODERS`
under its class name and its short name (the ``configs/<method>/`` folder)."""
from .clearclip import ClearCLIPEncoder
from .clip import CLIPEncoder
from .maskclip import MaskCLIPEncoder
from .naclip import NACLIPEncoder, neighbourhood_bias
from .resclip import ResCLIPEncoder
from .scclip import SCCLIPEncoder
from .sclip import SCLIPEncoder
from .sfp import SFPEncoder

__all__ = ['CLIPEncoder', 'ClearCLIPEncoder', 'MaskCLIPEncoder', 'NACLIPEncoder',
           'ResCLIPEncoder', 'SCCLIPEncoder', 'SCLIPEncoder', 'SFPEncoder',
           'neighbourhood_bias']
