"""Methods: one image encoder per method, registered in :data:`sfp.registry.ENCODERS`
under its class name and its short name (the ``configs/<method>/`` folder)."""
from .cass import CASSEncoder
from .clearclip import ClearCLIPEncoder
from .clip import CLIPEncoder
from .cliptrase import CLIPtraseEncoder
from .corrclip import CorrCLIPEncoder
from .lavg import LaVGEncoder, ground_in_regions
from .lposs import LPOSSEncoder
from .maskclip import MaskCLIPEncoder
from .naclip import NACLIPEncoder, neighbourhood_bias
from .proxyclip import ProxyCLIPEncoder, proxy_attention, vfm_view
from .resclip import ResCLIPEncoder
from .scclip import SCCLIPEncoder
from .sclip import SCLIPEncoder
from .sfp import SFPEncoder
from .trident import TridentEncoder, sam_guidance

__all__ = ['CASSEncoder', 'CLIPEncoder', 'CLIPtraseEncoder', 'ClearCLIPEncoder',
           'CorrCLIPEncoder', 'LaVGEncoder', 'LPOSSEncoder', 'MaskCLIPEncoder',
           'NACLIPEncoder', 'ProxyCLIPEncoder', 'ResCLIPEncoder', 'SCCLIPEncoder',
           'SCLIPEncoder', 'SFPEncoder', 'TridentEncoder', 'ground_in_regions',
           'neighbourhood_bias', 'proxy_attention', 'sam_guidance', 'vfm_view']
