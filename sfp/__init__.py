"""SFP: training-free open-vocabulary semantic segmentation with a purified CLIP."""
import warnings

from .compat import install_mmcv_ops_stand_in

install_mmcv_ops_stand_in()  # before anything imports mmseg
# mmcv-lite lacks the deformable-attention op; mmcv warns about it on import. SFP never
# uses it, so the warning is only noise for our users.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from . import datasets  # noqa: E402,F401  (registers datasets and transforms in mmseg)
from .models import SFPSegmentor  # noqa: E402  (registers the segmentor in mmseg)

__version__ = '0.1.0'
__all__ = ['SFPSegmentor', '__version__']
