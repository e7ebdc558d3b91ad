"""Makes ``import mmseg.models`` work with ``mmcv-lite`` in any interpreter.

mmseg imports ``mmcv.ops`` at module level, and mmcv-lite has no compiled ops, so mmseg's
own API (``from mmseg.apis import init_model``) fails before a config's
``custom_imports`` could bring SFP in.  The install therefore ships ``sfp_mmcv_ops.pth``,
which Python's ``site`` runs at start-up: it calls :func:`install`, which puts
:class:`StandInFinder` first on ``sys.meta_path``.  The finder answers for ``mmcv.ops``
only, only when that module is imported, and only when mmcv's compiled extension is
missing; it then gives the pure-PyTorch stand-in of :mod:`sfp_mmcv_ops.ops`.  With a full
mmcv it steps aside.  Nothing heavy is imported at start-up (torch and mmcv are imported
by whoever imports ``mmcv.ops``), and ``import sfp`` calls :func:`install` too, for a
checkout used without installing.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Optional, Sequence

OPS = 'mmcv.ops'


def full_mmcv_ops_available() -> bool:
    """True when mmcv's compiled extension (and so the real ``mmcv.ops``) exists."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


class StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``mmcv.ops`` as the stand-in when mmcv has no compiled ops."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[ModuleSpec]:
        if fullname != OPS or full_mmcv_ops_available():
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        from .ops import build_stand_in

        # mmcv warns on import that its deformable attention is missing, which is the
        # stand-in's doing; nothing here uses that op, so the warning is only noise.
        warnings.filterwarnings('ignore',
                                message='Fail to import ``MultiScaleDeformableAttention``')
        return build_stand_in()

    def exec_module(self, module: ModuleType) -> None:
        """The module is complete as created."""


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, StandInFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, StandInFinder())
