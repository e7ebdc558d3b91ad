"""Outlier detectors, registered in :data:`sfp.registry.OUTLIER_DETECTORS` by ``pm`` name."""
from __future__ import annotations

from typing import Union

from ...registry import OUTLIER_DETECTORS, build_from_registry
from .attention import CLSAttentionDetector, CLSSelfAttentionDetector
from .base import OutlierDetector, RankingDetector
from .clustering import DBSCANDetector, KMeansDetector
from .lof import LOFDetector, local_outlier_factor
from .norm import L2NormDetector


def build_detector(pm: Union[str, dict], res_cls: float = 0.3) -> OutlierDetector:
    """Build a detector from a ``pm`` name or config dict.

    For the release's ``pm='SOM'`` the CLS-attention weight is ``5 * res_cls`` (1.5),
    as the release ties them; a config dict sets every argument itself.
    """
    if isinstance(pm, str):
        cfg = dict(type=pm)
        if pm == 'SOM':
            cfg['cls_weight'] = 5 * res_cls
    elif isinstance(pm, dict) and 'type' in pm:
        cfg = dict(pm)
    else:
        raise ValueError(f'pm must be a detector name or a dict with a "type", got {pm!r}')
    return build_from_registry(OUTLIER_DETECTORS, cfg, 'outlier detector', argument='pm=')


__all__ = ['CLSAttentionDetector', 'CLSSelfAttentionDetector', 'DBSCANDetector', 'KMeansDetector',
           'L2NormDetector', 'LOFDetector', 'OutlierDetector', 'RankingDetector', 'build_detector',
           'local_outlier_factor']
