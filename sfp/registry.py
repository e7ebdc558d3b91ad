"""Registries of SFP's swappable parts.

The segmentor, its data preprocessor and the datasets register in mmseg's own
``MODELS`` and ``DATASETS`` so that mmseg configs and mmengine's Runner find them.
Outlier detectors have their own registry, keyed by the release's ``pm`` names;
adding a detector is one module with one ``@OUTLIER_DETECTORS.register_module()``.
Methods (SFP and the baselines) are image encoders in ``ENCODERS``, built from a
segmentor's ``encoder=dict(type=...)``; the parts an encoder is assembled from
(mitigation, enhancer, integrator) are in ``ENCODER_PARTS`` so that configs can give
them as dicts.  Vision foundation models read beside CLIP (DINO ...) are tower classes
in ``VFM_TOWERS``, which the VFM loader tries in turn on a checkpoint's keys.
Class-agnostic region generators (LaVG's panoptic cut ...) are in ``MASK_GENERATORS``.
"""
from mmengine.registry import Registry

OUTLIER_DETECTORS = Registry('outlier detector', locations=['sfp.models.detectors'])
ENCODERS = Registry('encoder', locations=['sfp.methods'])
ENCODER_PARTS = Registry('encoder part', locations=['sfp.models'])
VFM_TOWERS = Registry('vfm tower', locations=['sfp.vfm'])
MASK_GENERATORS = Registry('mask generator', locations=['sfp.masks'])


def registered_type(registry: Registry, name: str, what: str, argument: str = '') -> type:
    """The class registered as ``name``; an unknown name is a ValueError listing the
    choices (``what`` says what is looked up, ``argument`` prefixes the name)."""
    if name not in registry.module_dict:
        raise ValueError(f'unknown {what} {argument}{name!r}; choose from '
                         f'{", ".join(sorted(registry.module_dict))}')
    return registry.module_dict[name]


def build_from_registry(registry: Registry, cfg: dict, what: str, argument: str = ''):
    """Build a ``dict(type=..., **arguments)`` config; an unknown type or bad arguments
    are a ValueError naming them."""
    cls = registered_type(registry, cfg['type'], what, argument)
    try:
        # The class itself, not registry.build: under mmseg's default scope (which its
        # apis and mmengine's Runner set) mmengine would warn at every build that these
        # registries are not in mmseg's tree.
        return cls(**{k: v for k, v in cfg.items() if k != 'type'})
    except TypeError as err:
        raise ValueError(f'bad arguments for {what} {cfg["type"]!r}: {err}') from err
