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
from .inference import SlidingWindowLayout, patch_logits, sliding_windows, window_spans
from .integrator import HierarchicalIntegrator
from .logit_map import LogitMap, bilinear_matrix, window_average_matrix
from .mitigation import NeighbourMeanMitigation, mitigate_outliers
from .outliers import Outliers
from .pamr import PAMR
from .postprocess import postprocess_logit_map, postprocess_logits
from .segmentor import SFPSegmentor
from .wrapper import InferenceOnlyWrapper

__all__ = [
    'CLSAttentionDetector', 'CLSSelfAttentionDetector', 'EncoderOutput',
    'HierarchicalIntegrator', 'InferenceOnlyWrapper', 'L2NormDetector', 'LOFDetector',
    'LogitMap', 'NeighbourMeanMitigation', 'OutlierDetector', 'Outliers', 'PAMR',
    'SFPDataPreProcessor', 'SFPEncoder', 'SFPSegmentor', 'SemanticAwareAttentionEnhancer',
    'SlidingWindowLayout', 'aggregate', 'bilinear_matrix', 'build_detector',
    'guidance_attention', 'guidance_similarity', 'mitigate_outliers', 'patch_logits',
    'postprocess_logit_map', 'postprocess_logits', 'sliding_windows', 'window_average_matrix',
    'window_spans'
]
