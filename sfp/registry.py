"""Registries of SFP's swappable parts.

The segmentor, its data preprocessor and the datasets register in mmseg's own
``MODELS`` and ``DATASETS`` so that mmseg configs and mmengine's Runner find them.
Outlier detectors have their own registry, keyed by the release's ``pm`` names;
adding a detector is one module with one ``@OUTLIER_DETECTORS.register_module()``.
Methods (SFP and the baselines) are image encoders in ``ENCODERS``, built from a
segmentor's ``encoder=dict(type=...)``; the parts an encoder is assembled from
(mitigation, enhancer, integrator) are in ``ENCODER_PARTS`` so that configs can give
them as dicts.
"""
from mmengine.registry import Registry

OUTLIER_DETECTORS = Registry('outlier detector', locations=['sfp.models.detectors'])
ENCODERS = Registry('encoder', locations=['sfp.methods'])
ENCODER_PARTS = Registry('encoder part', locations=['sfp.models'])
