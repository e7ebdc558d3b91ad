"""CorrCLIP's SAM2 automatic mask generator (its ``mask_generator='sam2'``), as a mask
generator of the masks stage: SAM2 Hiera-L's automatic masks, painted into one region map
(0 = not segmented).  Needs the ``sam2`` package (``pip install -e '.[sam2]'``) and SAM2's
checkpoint; both are optional: without them only this generator is unavailable.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from ..registry import MASK_GENERATORS
from .regions import RegionMasks
from .sources import MaskGenerator

#: What to install when the package is missing (one line, as the error says).
INSTALL_HINT = ("pip install -e '.[sam2]' (SAM2, facebookresearch/sam2 on PyPI as sam2; "
                'it brings torchvision)')


def paint_regions(annotations: Sequence[dict], size: Sequence[int]) -> np.ndarray:
    """SAM2's automatic masks -> an (H, W) int64 region map, as CorrCLIP paints them: masks
    sorted by ``area`` ascending (a stable sort: equal areas keep SAM2's order) get ids
    1..K in that order, each painted over the ones before (a larger mask overwrites the
    smaller ones it covers); pixels in no mask stay 0."""
    regions = np.zeros(tuple(size), dtype=np.int64)
    ordered = sorted(annotations, key=lambda annotation: annotation['area'])
    for region_id, annotation in enumerate(ordered, start=1):
        regions[np.asarray(annotation['segmentation'], dtype=bool)] = region_id
    return regions


@MASK_GENERATORS.register_module(name=['SAM2AutomaticMasks', 'sam2'])
class SAM2AutomaticMasks(MaskGenerator):
    """SAM2's automatic mask generator with CorrCLIP's settings.

    The release builds ``build_sam2('sam2_hiera_l.yaml', 'sam2_hiera_large.pt',
    apply_postprocessing=False)`` in half precision and runs
    ``SAM2AutomaticMaskGenerator(points_per_side=8, pred_iou_thresh=0.4,
    stability_score_thresh=0.4, multimask_output=False)`` on the RGB image under CUDA fp16
    autocast (its README's SAM2-8 row; its pre-generated masks used 32 points per side).

    Args:
        checkpoint: SAM2's weights file (``sam2_hiera_large.pt``, published by Meta).
        config: SAM2's model config, as the ``sam2`` package names it.
        points_per_side, pred_iou_thresh, stability_score_thresh, multimask_output: the
            automatic generator's settings.
        half: on a GPU, run the model in float16 under fp16 autocast, as the release does
            (on the CPU it runs in float32).
    """

    file_format = 'corrclip'

    def __init__(self,
                 checkpoint: Union[str, Path] = 'sam2_hiera_large.pt',
                 config: str = 'configs/sam2/sam2_hiera_l.yaml',
                 points_per_side: int = 8,
                 pred_iou_thresh: float = 0.4,
                 stability_score_thresh: float = 0.4,
                 multimask_output: bool = False,
                 half: bool = True):
        try:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
            from sam2.build_sam import build_sam2
        except ImportError:
            raise ImportError(f'the SAM2 mask generator needs the sam2 package: '
                              f'{INSTALL_HINT}') from None
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f'SAM2 checkpoint {checkpoint} not found: download '
                                    f'sam2_hiera_large.pt (Meta\'s SAM2 Hiera-L) and pass its '
                                    f'path as checkpoint')
        self.model = build_sam2(config, str(checkpoint), device='cpu',
                                apply_postprocessing=False)
        self.generator = SAM2AutomaticMaskGenerator(
            model=self.model, points_per_side=points_per_side,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            multimask_output=multimask_output)
        self.half = half

    def to(self, device: Union[str, torch.device]) -> SAM2AutomaticMasks:
        super().to(device)
        self.model.to(self.device)
        if self.half and self.device.type == 'cuda':
            self.model.half()  # the release's sam2.half()
        return self

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> RegionMasks:
        """(H, W, 3) uint8 RGB -> its regions (H, W); 0 = in no mask."""
        cuda = self.device.type == 'cuda' and self.half
        autocast = torch.autocast('cuda', dtype=torch.float16) if cuda else nullcontext()
        with autocast:
            annotations = self.generator.generate(image)
        labels = paint_regions(annotations, image.shape[:2])
        return RegionMasks.from_label_map(torch.from_numpy(labels))
