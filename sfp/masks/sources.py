"""Where an image's regions come from: a folder of per-image files, or a generator run
on the image (:data:`sfp.registry.MASK_GENERATORS`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..registry import MASK_GENERATORS, registered_type
from .formats import FORMATS, MaskFileError, mask_file_name, read_mask_file
from .regions import RegionMasks

PathLike = Union[str, Path]


class MaskGenerator:
    """Base of a class-agnostic mask generator: RGB image -> :class:`RegionMasks` at its
    size.  Registered in :data:`~sfp.registry.MASK_GENERATORS`.

    Attributes:
        file_format: the format its release writes ('lavg' or 'corrclip'), the default of
            ``tools/generate_masks.py``.
        uses_vfm: whether it reads a vision foundation model: the segmentor (or the
            tool) then hands it its ``vfm_path`` through :meth:`set_vfm` when the
            generator names none.
        device: where it runs (:meth:`to` moves it; its models load there).
    """

    file_format = 'corrclip'
    uses_vfm = False
    device = torch.device('cpu')

    def set_vfm(self, vfm_path: Union[str, Path, nn.Module, None]) -> None:
        """Take the VFM of the model it serves (only generators with ``uses_vfm``)."""

    def to(self, device: Union[str, torch.device]) -> MaskGenerator:
        self.device = torch.device(device)
        return self

    def __call__(self, image: np.ndarray) -> RegionMasks:
        """(H, W, 3) uint8 RGB -> regions (H, W)."""
        raise NotImplementedError


def read_rgb(path: PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, decoded by PIL (what the releases' generators
    read)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert('RGB'))
    except (OSError, ValueError) as err:
        raise MaskFileError(f'{path}: cannot read the image to generate its masks ({err})') \
            from None


class MaskSource:
    """Gives an image, named by its file (``img_path`` of its metainfo), its regions at
    its original size."""

    def __call__(self, image_path: Optional[PathLike],
                 size: Optional[Tuple[int, int]] = None,
                 image: Optional[Callable[[], np.ndarray]] = None) -> RegionMasks:
        """The regions of the image at ``image_path``; with ``size`` (H, W), regions of
        another size are refused in one line naming both.  ``image``: gives the image
        (RGB uint8) when there is no file, for a source that can use it (a generator)."""
        regions, origin = self.read(image_path, image, size)
        if size is not None:
            regions.check_size(size, origin)
        return regions

    def read(self, image_path: Optional[PathLike],
             image: Optional[Callable[[], np.ndarray]] = None,
             size: Optional[Tuple[int, int]] = None) -> Tuple[RegionMasks, str]:
        """The regions and where they come from (a file, a generator), for messages."""
        raise NotImplementedError

    def to(self, device: torch.device) -> MaskSource:
        return self


class MaskFolder(MaskSource):
    """A folder of per-image mask files in a release's format (see :mod:`.formats`).

    Args:
        path: the folder (LaVG's ``maskpred_root``, CorrCLIP's ``instance_mask_path``).
        file_format: 'lavg' or 'corrclip'; None takes whichever file the folder has for
            each image (``<name>.pth``, else ``<stem>.npz``).
    """

    def __init__(self, path: PathLike, file_format: Optional[str] = None):
        self.path = Path(path)
        if file_format is not None and file_format not in FORMATS:
            raise ValueError(f'unknown mask file format {file_format!r}; choose from '
                             f'{", ".join(FORMATS)}')
        self.file_format = file_format
        if not self.path.is_dir():
            raise MaskFileError(f'mask folder {self.path} does not exist (or is not a folder)')

    def __repr__(self) -> str:
        return f'MaskFolder({str(self.path)!r}, file_format={self.file_format!r})'

    def read(self, image_path: Optional[PathLike],
             image: Optional[Callable[[], np.ndarray]] = None,
             size: Optional[Tuple[int, int]] = None) -> Tuple[RegionMasks, str]:
        if image_path is None:
            raise MaskFileError(f'masks from {self.path} are found by the image file\'s '
                                f'name, but this image has no img_path in its metainfo')
        formats = [self.file_format] if self.file_format else list(FORMATS)
        names = [mask_file_name(image_path, f) for f in formats]
        for name, file_format in zip(names, formats):
            if (self.path / name).is_file():
                return read_mask_file(self.path / name, file_format), str(self.path / name)
        raise MaskFileError(f'no mask file {" or ".join(names)} in {self.path} for image '
                            f'{image_path}')


class GeneratedMasks(MaskSource):
    """A generator run on each image file as it comes."""

    def __init__(self, generator: MaskGenerator):
        self.generator = generator

    def __repr__(self) -> str:
        return f'GeneratedMasks({type(self.generator).__name__})'

    def read(self, image_path: Optional[PathLike],
             image: Optional[Callable[[], np.ndarray]] = None,
             size: Optional[Tuple[int, int]] = None) -> Tuple[RegionMasks, str]:
        """Run on the image file; an image without one (in memory) is run on as ``image``
        gives it (the segmentor's input, resized) and its regions resized to ``size``."""
        name = type(self.generator).__name__
        if image_path is not None:
            return self.generator(read_rgb(image_path)), f'{name} on {image_path}'
        if image is None:
            raise MaskFileError(f'{name} reads each image from its file, but this image has '
                                f'no img_path in its metainfo')
        regions = self.generator(image())
        return (regions if size is None else regions.resized(size)), f'{name} on an image'


    def to(self, device: torch.device) -> MaskSource:
        self.generator.to(device)
        return self


MaskSpec = Union[None, str, Path, dict, MaskSource, MaskGenerator]


def build_mask_generator(cfg: Union[str, dict], vfm_path: Any = None) -> MaskGenerator:
    """A generator from its registered name or ``dict(type=name, **arguments)``;
    ``vfm_path`` goes to one that reads a VFM and names none."""
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    cls = registered_type(MASK_GENERATORS, cfg.pop('type'), 'mask generator')
    try:
        generator = cls(**cfg)
    except TypeError as err:
        raise ValueError(f'bad arguments for mask generator {cls.__name__}: {err}') from err
    if generator.uses_vfm:
        generator.set_vfm(vfm_path)
    return generator


def build_mask_source(spec: MaskSpec, vfm_path: Any = None) -> Optional[MaskSource]:
    """A mask source from what a config or a command line gives.

    Args:
        spec: None (no masks); a folder; a generator's registered name or
            ``dict(type=name, ...)``; ``dict(type='MaskFolder', path=..., file_format=...)``;
            or a built source or generator.
        vfm_path: the VFM a generator reads when it names none (the segmentor's).
    """
    if spec is None or isinstance(spec, MaskSource):
        return spec
    if isinstance(spec, MaskGenerator):
        return GeneratedMasks(spec)
    if isinstance(spec, dict) and spec.get('type') == 'MaskFolder':
        return MaskFolder(**{k: v for k, v in spec.items() if k != 'type'})
    if isinstance(spec, (str, Path)) and str(spec) not in MASK_GENERATORS.module_dict:
        if not Path(spec).is_dir():
            raise MaskFileError(f'masks={str(spec)!r} is neither a folder nor a mask generator '
                                f'(generators: {", ".join(sorted(MASK_GENERATORS.module_dict))})')
        return MaskFolder(spec)
    if not isinstance(spec, (str, dict)):
        raise ValueError(f'masks must be a folder, a generator name or config dict, got '
                         f'{spec!r}')
    return GeneratedMasks(build_mask_generator(spec, vfm_path))
