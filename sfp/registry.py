"""Registries of SFP's swappable parts.

The segmentor, its data preprocessor and the datasets register in mmseg's own
``MODELS`` and ``DATASETS`` so that mmseg configs and mmengine's Runner find them.
Outlier detectors have their own registry, keyed by the release's ``pm`` names;
adding a detector is one module with one ``@OUTLIER_DETECTORS.register_module()``.
"""
from mmengine.registry import Registry

OUTLIER_DETECTORS = Registry('outlier detector', locations=['sfp.models.detectors'])
