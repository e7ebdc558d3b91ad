"""The generic segmentor, the shared encoder machinery and SFP's model parts."""
from ..methods import SFPEncoder
from .data_preprocessor import SFPDataPreProcessor
from .detectors import (
                        CLSAttentionDetector,
                        CLSSelfAttentionDetector,
                        L2NormDetector,
                        LOFDetector,
                        OutlierDetector,
                        build_detector,
)
from .encoder import (
                        BlockWalk,
                        EncoderOutput,
                        LastBlockAttentionEncoder,
                        MethodEncoder,
                        build_part,
)
from .enhancer import SemanticAwareAttentionEnhancer
from .guidance import aggregate, guidance_attention, guidance_similarity
from .inference import SlidingWindowLayout, patch_logits, sliding_windows, window_spans
from .integrator import HierarchicalIntegrator
from .label_votes import LabelVotes
from .logit_map import LogitMap, bilinear_matrix, window_average_matrix
from .map_correction import correct_map
from .mitigation import NeighbourMeanMitigation, mitigate_outliers
from .outliers import Outliers
from .pamr import PAMR
from .postprocess import postprocess_class_map, postprocess_logit_map, postprocess_logits
from .regions import CorrelationRegions, vote_in_regions
from .segmentor import ImageMaps, SFPSegmentor
from .wrapper import InferenceOnlyWrapper

__all__ = [
    'BlockWalk', 'CLSAttentionDetector', 'CLSSelfAttentionDetector', 'CorrelationRegions',
    'EncoderOutput', 'HierarchicalIntegrator', 'ImageMaps', 'InferenceOnlyWrapper',
    'L2NormDetector', 'LOFDetector', 'LabelVotes', 'LastBlockAttentionEncoder', 'LogitMap',
    'MethodEncoder', 'NeighbourMeanMitigation', 'OutlierDetector', 'Outliers', 'PAMR',
    'SFPDataPreProcessor', 'SFPEncoder', 'SFPSegmentor', 'SemanticAwareAttentionEnhancer',
    'SlidingWindowLayout', 'aggregate', 'bilinear_matrix', 'build_detector', 'build_part',
    'correct_map', 'guidance_attention', 'guidance_similarity', 'mitigate_outliers',
    'patch_logits', 'postprocess_class_map', 'postprocess_logit_map', 'postprocess_logits',
    'sliding_windows', 'vote_in_regions', 'window_average_matrix', 'window_spans'
]
