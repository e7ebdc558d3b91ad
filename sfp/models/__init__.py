"""SFP's model parts and the segmentor."""
from .data_preprocessor import SFPDataPreProcessor
from .detectors import (
                        CLSAttentionDetector,
                        CLSSelfAttentionDetector,
                        L2NormDetector,
                        LOFDetector,
                        OutlierDetector,
                        build_detector,
)
from .encoder import EncoderOutput, SFPEncoder
from .enhancer import SemanticAwareAttentionEnhancer
from .guidance import aggregate, guidance_attention, guidance_similarity
from .inference import patch_logits, sliding_windows
from .integrator import HierarchicalIntegrator
from .mitigation import NeighbourMeanMitigation, mitigate_outliers
from .outliers import Outliers
from .pamr import PAMR
from .postprocess import postprocess_logits, postprocess_resized
from .segmentor import SFPSegmentor
from .wrapper import InferenceOnlyWrapper

__all__ = [
    'CLSAttentionDetector', 'CLSSelfAttentionDetector', 'EncoderOutput', 'HierarchicalIntegrator',
    'InferenceOnlyWrapper',
    'L2NormDetector', 'LOFDetector', 'NeighbourMeanMitigation', 'OutlierDetector', 'Outliers',
    'PAMR', 'SFPDataPreProcessor', 'SFPEncoder', 'SFPSegmentor', 'SemanticAwareAttentionEnhancer',
    'aggregate', 'build_detector', 'guidance_attention', 'guidance_similarity',
    'mitigate_outliers', 'patch_logits', 'postprocess_logits', 'postprocess_resized',
    'sliding_windows'
]
