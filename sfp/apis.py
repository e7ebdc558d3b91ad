"""High-level inference: build a segmentor for a vocabulary, segment images."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmseg.structures import SegDataSample

from .benchmarks import BENCHMARKS, CONFIGS_DIR, did_you_mean, get_benchmark
from .datasets import dataset_meta
from .models import SFPSegmentor
from .text import load_vocabulary, parse_class_names, read_class_names

# Vocabulary presets: the benchmarks of the benchmark table, by name.
PRESETS: Dict[str, Path] = {name: b.class_file for name, b in BENCHMARKS.items()}
DEFAULT_SHORT_SIDE = 336
# Model arguments that are the caller's, never a config's.
# clip_activation goes with the caller's clip_path (LPOSS's config names LAION's GELU).
CALLER_KEYS = ('type', 'clip_path', 'name_path', 'device', 'precision', 'return_probs',
               'crop_batch_size', 'memory_budget_mb', 'clip_activation')

Vocabulary = Union[str, Path, Sequence[Sequence[str]]]


def available_methods() -> List[str]:
    """Methods with a model base ``configs/_base_/models/<method>_vit-b16.py``."""
    return sorted(p.name[:-len('_vit-b16.py')]
                  for p in (CONFIGS_DIR / '_base_' / 'models').glob('*_vit-b16.py'))


def check_method(method: str) -> str:
    """``method`` itself; an unknown one is a ValueError listing the available."""
    methods = available_methods()
    if method not in methods:
        raise ValueError(f'unknown method {method!r}{did_you_mean(method, methods)}; '
                         f'choose from {", ".join(methods)}')
    return method


def _model_settings(config: Path) -> Tuple[dict, int]:
    """A config's model arguments (without the caller's, but with its class file,
    ``name_path``) and its short side."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    model = {k: v for k, v in cfg.model.to_dict().items()
             if k not in CALLER_KEYS or k == 'name_path'}
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
    short_sides = [t['scale'][1] for t in pipeline if t.get('type') == 'Resize']
    return model, short_sides[0] if short_sides else DEFAULT_SHORT_SIDE


def method_vfm(method: str = 'sfp') -> Optional[str]:
    """The vision foundation model a method reads by default (its base config's
    ``vfm_path``, e.g. ProxyCLIP's 'dino_vitb8'); None for methods that read none."""
    return method_defaults(method).get('vfm_path')


def method_sam(method: str = 'sfp') -> Optional[str]:
    """The SAM a method reads by default (its base config's ``sam_path``, Trident's
    'sam_vit_b'); None for methods that read none."""
    return method_defaults(method).get('sam_path')


def method_defaults(method: str = 'sfp') -> dict:
    """A method's model arguments as its base config gives them (encoder, purify,
    window, PAMR and post-processing defaults)."""
    path = CONFIGS_DIR / '_base_' / 'models' / f'{check_method(method)}_vit-b16.py'
    model = _model_settings(path)[0]
    model.pop('name_path', None)
    return model


@dataclass
class Preset:
    """A benchmark's vocabulary and a method's released setting on it, for segmenting
    one's own images.

    Attributes:
        name: the benchmark's name.
        classes: synonym lists of the method's class file for it.
        display_names: the dataset's own class names (VOC's class 0 is "background", not
            its first synonym), for legends and tables.
        model_kwargs: the method's released setting on it (window, thresholds, PAMR ...),
            as its config ``configs/<method>/<method>_vit-b16_<name>.py`` gives it (its
            base config's defaults included); on a dataset outside the paper's table
            (CamVid) without such a config, its base config's.
        short_side: the short side its images are resized to.
    """

    name: str
    classes: List[List[str]]
    display_names: List[str]
    model_kwargs: dict = field(default_factory=dict)
    short_side: int = DEFAULT_SHORT_SIDE


def load_preset(name: str, method: str = 'sfp') -> Preset:
    """The preset of a benchmark of the table (see :mod:`sfp.benchmarks`) for a method."""
    benchmark = get_benchmark(name)
    config = benchmark.config(check_method(method))
    if config.is_file():
        model, short_side = _model_settings(config)
    elif not benchmark.in_paper:  # an example dataset: any method, with its base's setting
        model, short_side = method_defaults(method), benchmark.short_side
    else:
        raise FileNotFoundError(f'preset {name!r} of method {method!r} needs {config}, part '
                                f'of the repository checkout')
    # Presets are the released class files, kept as they are (see parse_class_names).
    classes = read_class_names(model.pop('name_path', benchmark.class_file),
                               allow_duplicates=True)
    model['allow_duplicate_names'] = True
    return Preset(name=name, classes=classes,
                  display_names=list(dataset_meta(benchmark.dataset_type,
                                                  [s[0] for s in classes])['classes']),
                  model_kwargs=model, short_side=short_side)


def resolve_vocabulary(vocabulary: Vocabulary) -> List[List[str]]:
    """Synonym lists of a vocabulary given as a preset name, a class-name file, a comma
    list of classes (synonyms joined with '|', e.g. ``'sky,person|people,car'``) or
    already as synonym lists.

    A vocabulary of one class is an error (every pixel would get it): most often a
    misspelt preset, so the message lists the presets and suggests the closest.
    """
    if is_preset(vocabulary):
        return load_preset(str(vocabulary)).classes
    if not isinstance(vocabulary, (str, Path)):
        classes = load_vocabulary(vocabulary)
    elif Path(vocabulary).is_file():
        classes = read_class_names(vocabulary)
    elif Path(str(vocabulary)).suffix == '.txt' or '/' in str(vocabulary):
        raise FileNotFoundError(f'class-name file not found: {vocabulary}')
    else:
        text = str(vocabulary)
        classes = parse_class_names([item.replace('|', ',') for item in text.split(',')],
                                    source=f'vocabulary {text!r}')
    if len(classes) < 2:
        word = ', '.join(classes[0]) if classes else str(vocabulary)
        raise ValueError(f'vocabulary {word!r} has one class, so every pixel would get it. '
                         f'Give a preset{did_you_mean(word, list(PRESETS))} '
                         f'({", ".join(PRESETS)}), a class-name file, or at least two '
                         f'classes separated by commas')
    return classes


def vocabulary_setting(vocabulary: Vocabulary, method: str = 'sfp') -> Preset:
    """Classes, names and model setting of a vocabulary for a method: a preset's own
    (:func:`load_preset`: the method's released setting on that benchmark, its class file
    kept as released, repeated names included); else the vocabulary's classes, their
    first synonyms as names, and the method's base config (:func:`method_defaults`)."""
    if is_preset(vocabulary):
        return load_preset(str(vocabulary), method)
    classes = resolve_vocabulary(vocabulary)
    return Preset(name=str(vocabulary), classes=classes,
                  display_names=[synonyms[0] for synonyms in classes],
                  model_kwargs=method_defaults(method))


def init_segmentor(clip_path: str = 'ViT-B/16', vocabulary: Vocabulary = 'voc21',
                   device: Union[str, torch.device, None] = None,
                   precision: Optional[str] = None, return_probs: bool = False,
                   method: str = 'sfp', **kwargs) -> SFPSegmentor:
    """A segmentor running ``method`` for a vocabulary (see :func:`resolve_vocabulary`).

    Its arguments are those of :func:`vocabulary_setting`, then ``kwargs`` (e.g.
    ``vfm_path``, a VFM name, file or loaded tower, for a method that reads one).
    ``return_probs=True`` also keeps each image's class probabilities at full resolution
    (``seg_logits``, classes x H x W in float32: 4.5 GiB for an 8-megapixel image and 150
    classes); by default only the label maps are kept.
    """
    setting = vocabulary_setting(vocabulary, method)
    return SFPSegmentor(clip_path=clip_path, name_path=setting.classes, device=device,
                        precision=precision, return_probs=return_probs,
                        **{**setting.model_kwargs, 'class_names': setting.display_names,
                           **kwargs})


def is_preset(vocabulary: Vocabulary) -> bool:
    """Whether a vocabulary names a preset."""
    return isinstance(vocabulary, (str, Path)) and str(vocabulary) in PRESETS


def as_bgr_uint8(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """An image array as (H, W, 3) uint8 BGR, the form the segmentor's pipeline takes.

    Converts (H, W) and (H, W, 1) gray, (H, W, 4) BGRA (alpha dropped), uint16 (0..65535
    mapped to 0..255) and float in [0, 1]; anything else is refused with a message saying
    what is expected.
    """
    expected = ('expected an (H, W, 3) uint8 BGR array (as cv2.imread or '
                'sfp.datasets.read_image give), (H, W) gray, (H, W, 4) BGRA, uint16, or float '
                'in [0, 1]')
    if not isinstance(image, np.ndarray):
        raise TypeError(f'{name}: {expected}; got {type(image).__name__}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f'{name}: {expected}; got shape {image.shape}')
    image = image[:, :, :3]
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257).round()
    elif image.dtype.kind == 'f':
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError(f'{name}: a float image must hold values in [0, 1]; {expected}')
        image = (image * 255).round()
    elif image.dtype != np.uint8:
        raise ValueError(f'{name}: {expected}; got dtype {image.dtype}')
    return np.ascontiguousarray(image.astype(np.uint8))


def prepare_image(image_bgr: np.ndarray, short_side: int = DEFAULT_SHORT_SIDE,
                  max_long_side: int = 2048) -> torch.Tensor:
    """Resize like the benchmarks' pipeline (mmseg ``Resize(scale=(2048, short_side),
    keep_ratio=True)``) -> (3, h, w) uint8 BGR tensor."""
    resized = mmcv.imrescale(image_bgr, (max_long_side, short_side),
                             interpolation='bilinear', backend='cv2')
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def segment_images(segmentor: SFPSegmentor, images_bgr: Sequence[np.ndarray],
                   short_side: int = DEFAULT_SHORT_SIDE,
                   image_paths: Optional[Sequence[Union[str, Path]]] = None
                   ) -> List[SegDataSample]:
    """Segment images (see :func:`as_bgr_uint8` for the forms taken); predictions come
    at each image's own size.  ``image_paths``: the files they were read from, by which a
    segmentor's mask folder finds their masks (``img_path`` of each sample)."""
    inputs, samples = [], []
    for index, image in enumerate(images_bgr):
        image = as_bgr_uint8(image, f'image {index}')
        prepared = prepare_image(image, short_side)
        inputs.append(prepared)
        meta = dict(ori_shape=image.shape[:2], img_shape=tuple(prepared.shape[1:]))
        if image_paths is not None:
            meta['img_path'] = str(image_paths[index])
        samples.append(SegDataSample(metainfo=meta))
    data = segmentor.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)
    return segmentor.predict(data['inputs'], data['data_samples'])
