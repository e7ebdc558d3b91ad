"""Checks that turn a wrong data root or a missing file into one clear message."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..benchmarks import BENCHMARKS

# What each dataset type expects under its data root (from the benchmark table).
LAYOUTS = {b.dataset_type: b.layout for b in BENCHMARKS.values()}
LAYOUTS['CustomSegDataset'] = ('<img_path>/*<img_suffix> and <seg_map_path>/*<seg_map_suffix>, '
                               'optionally an ann_file listing file names without suffix')


class DataLayoutError(FileNotFoundError):
    """A data root or file is not where the dataset config says it is."""


def _expected(dataset_type: str) -> str:
    layout = LAYOUTS.get(dataset_type, 'the folders named by data_prefix')
    return f'{dataset_type} expects under its data root: {layout}'


def check_dataset_config(cfg: Mapping,
                         fix: str = 'Pass the right folder with --data-root (or data_root in '
                                    'the config)') -> None:
    """Check that a dataset config's data root, folders and split file exist.

    Raises :class:`DataLayoutError` naming each missing path and the expected layout;
    ``fix`` says how the caller's user gives another data root.
    """
    dataset_type = str(cfg.get('type'))
    root = Path(cfg.get('data_root') or '')
    if not root.is_dir():
        raise DataLayoutError(
            f'data root {root.resolve()} does not exist. {_expected(dataset_type)}. {fix}.')
    missing = []
    for key, folder in dict(cfg.get('data_prefix') or {}).items():
        if key in ('img_path', 'seg_map_path') and not (root / folder).is_dir():
            missing.append(f'{key}: {root / folder}')
    ann_file = cfg.get('ann_file')
    if ann_file:
        path = Path(ann_file) if Path(ann_file).is_absolute() else root / ann_file
        if not path.is_file():
            missing.append(f'ann_file: {path}')
    if missing:
        raise DataLayoutError(f'missing under data root {root}: ' + '; '.join(missing)
                              + f'. {_expected(dataset_type)}.')


def check_dataset_files(dataset) -> None:
    """Check that a built dataset lists images and that each one has its label map."""
    dataset_type = type(dataset).__name__
    if len(dataset) == 0:
        raise DataLayoutError(
            f'{dataset_type} found no image under {dataset.data_prefix.get("img_path")} with '
            f'suffix {getattr(dataset, "img_suffix", "?")!r}. {_expected(dataset_type)}.')
    missing = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        for key in ('img_path', 'seg_map_path'):
            if info.get(key) and not Path(info[key]).is_file():
                missing.append(info[key])
    if missing:
        shown = ', '.join(missing[:5]) + (f' ... ({len(missing)} in all)' if len(missing) > 5
                                          else '')
        raise DataLayoutError(f'{dataset_type}: {len(missing)} listed file(s) do not exist: '
                              f'{shown}. {_expected(dataset_type)}.')
