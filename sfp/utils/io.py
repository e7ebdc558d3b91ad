"""Atomic file output: a file is either its old self or completely new, never partial."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

import cv2
import numpy as np

PathLike = Union[str, Path]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` only on success.

    Example::

        with atomic_write('metrics.json', 'w') as f:
            json.dump(metrics, f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from others
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_write(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_write(path, 'w') as f:
        f.write(text)


def atomic_write_png(path: PathLike, array: np.ndarray) -> None:
    """Encode an (H, W) or (H, W, 3) BGR array as PNG and write it atomically."""
    ok, encoded = cv2.imencode('.png', array)
    if not ok:
        raise ValueError(f'could not encode {path} as PNG')
    atomic_write_bytes(path, encoded.tobytes())
