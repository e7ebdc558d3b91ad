"""Normalisation of a batch of images that may differ in size."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS

# CLIP's normalisation on 0..255 RGB.
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)


@MODELS.register_module()
class SFPDataPreProcessor(SegDataPreProcessor):
    """mmseg's preprocessor (BGR -> RGB, CLIP mean/std), keeping image sizes apart.

    At test time images of one size are stacked into (B, 3, H, W) as in mmseg; a batch
    of different sizes is returned as a list of (3, H_i, W_i) tensors instead of
    failing, and the segmentor encodes every crop of every image in shared batches.

    Args:
        non_blocking: copy batches to the device without waiting (they come from the
            loader's pinned memory), so the host prepares the next batch meanwhile.
    """

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                 bgr_to_rgb: bool = True, non_blocking: bool = True, **kwargs):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb, **kwargs)
        # mmseg's preprocessor does not pass this on to mmengine's, which reads it here.
        self._non_blocking = non_blocking

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        if training:
            return super().forward(data, training)
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 3:
            inputs = [inputs]
        if self.channel_conversion:
            inputs = [img[[2, 1, 0]] if img.shape[0] == 3 else img for img in inputs]
        inputs = [(img.float() - self.mean) / self.std for img in inputs]
        if all(img.shape == inputs[0].shape for img in inputs):
            inputs = torch.stack(inputs)
        return dict(inputs=inputs, data_samples=data.get('data_samples'))


def unit_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images normalised as :class:`SFPDataPreProcessor` does (its float32 constants) back
    to 0..1 RGB, in their own precision: for methods whose release normalises each tower's
    input itself (LPOSS)."""
    def channels(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values).to(device=images.device, dtype=images.dtype).view(3, 1, 1)

    return (images * channels(CLIP_STD) + channels(CLIP_MEAN)) / 255
