"""SFP: training-free open-vocabulary semantic segmentation with a purified CLIP."""
import sfp_mmcv_ops

sfp_mmcv_ops.install()  # before anything imports mmseg (the installed .pth did it already)

from . import datasets  # noqa: E402,F401  (registers datasets and transforms in mmseg)
from .models import SFPSegmentor  # noqa: E402  (registers the segmentor in mmseg)

__version__ = '0.1.0'
__all__ = ['SFPSegmentor', '__version__']
