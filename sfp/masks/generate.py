"""Write a generator's masks for many images, one file per image (``tools/generate_masks.py``).

Resumable: an image whose file exists already is skipped (files are written atomically,
so an existing one is complete); a killed run goes on where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

from tqdm import tqdm

from .formats import mask_file_name, write_mask_file
from .sources import MaskGenerator, read_rgb

PathLike = Union[str, Path]
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@dataclass
class GenerationReport:
    """What a run did: files written, files kept from an earlier run, images that failed
    (one line each)."""

    written: int = 0
    kept: int = 0
    failed: List[str] = field(default_factory=list)


def images_in(folder: PathLike) -> List[Path]:
    """The image files under a folder (subfolders included), sorted."""
    return sorted(p for p in Path(folder).rglob('*')
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def dataset_images(config: PathLike, data_root: Optional[str] = None) -> List[Path]:
    """The image files of a config's test dataset (``data_root`` overrides its root)."""
    from ..evaluation import build_test_config, check_test_data
    cfg = build_test_config(config, data_root=data_root)
    check_test_data(cfg)
    from mmseg.registry import DATASETS
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    return [Path(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]


def check_distinct_files(images: Sequence[Path], file_format: str) -> None:
    """Two images that would share a mask file name (same stem in two folders) are an
    error naming both: the releases find files by the name alone."""
    seen = {}
    for image in images:
        name = mask_file_name(image, file_format)
        if name in seen:
            raise ValueError(f'{seen[name]} and {image} would both write {name}: mask files '
                             f'are found by the image file name alone; generate them into '
                             f'separate folders')
        seen[name] = image


def generate_mask_files(generator: MaskGenerator, images: Sequence[PathLike],
                        out_dir: PathLike, file_format: Optional[str] = None,
                        progress: bool = True) -> GenerationReport:
    """Run ``generator`` on each image file and write its regions to ``out_dir`` in
    ``file_format`` ('lavg' or 'corrclip'; default the generator's own), skipping images
    whose file exists.  One image's failure is reported and the others go on."""
    file_format = file_format or generator.file_format
    images = [Path(p) for p in images]
    check_distinct_files(images, file_format)
    out_dir = Path(out_dir)
    report = GenerationReport()
    bar = tqdm(images, desc=f'{type(generator).__name__} masks', unit='image',
               disable=not progress)
    for image in bar:
        target = out_dir / mask_file_name(image, file_format)
        if target.exists():
            report.kept += 1
            continue
        try:
            regions = generator(read_rgb(image))
        except Exception as err:  # noqa: BLE001 - one image must not stop the others
            report.failed.append(f'{image}: {type(err).__name__}: {err}')
            continue
        write_mask_file(target, regions, file_format)
        report.written += 1
    return report
