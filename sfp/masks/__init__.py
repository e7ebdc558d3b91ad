"""Class-agnostic regions as a stage of the framework.

A *mask source* gives every image an integer region map (0 = not segmented) or a stack
of possibly overlapping region masks (:class:`RegionMasks`), at the image's original
size: a folder of per-image files in a release's format (:class:`MaskFolder`; LaVG's
``.pth``, CorrCLIP's ``.npz``), or a generator run on the image file
(:data:`sfp.registry.MASK_GENERATORS`: LaVG's panoptic cut, ...).  The segmentor's
``masks`` argument (or the releases' names ``maskpred_root`` / ``instance_mask_path``)
picks one; see :class:`sfp.models.SFPSegmentor` for how a method reads them.
"""
from .formats import FORMATS, MaskFileError, mask_file_name, read_mask_file, write_mask_file
from .panoptic_cut import CRF_SETTINGS, PanopticCut, PanopticCutResult
from .regions import ImageRegions, RegionMasks, nearest_indices
from .sources import (
                      GeneratedMasks,
                      MaskFolder,
                      MaskGenerator,
                      MaskSource,
                      MaskSpec,
                      build_mask_generator,
                      build_mask_source,
                      read_rgb,
)

__all__ = [
    'CRF_SETTINGS', 'FORMATS', 'GeneratedMasks', 'ImageRegions', 'MaskFileError', 'MaskFolder',
    'MaskGenerator', 'MaskSource', 'MaskSpec', 'PanopticCut', 'PanopticCutResult', 'RegionMasks',
    'build_mask_generator', 'build_mask_source', 'mask_file_name', 'nearest_indices',
    'read_mask_file', 'read_rgb', 'write_mask_file',
]
