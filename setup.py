"""Build hook; the metadata lives in pyproject.toml.

The wheel, editable or not, also carries ``sfp_mmcv_ops.pth`` at the top of
site-packages, so that every interpreter of the environment can import mmseg with
mmcv-lite (see :mod:`sfp_mmcv_ops`).
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = 'sfp_mmcv_ops.pth'


class BuildPyWithPth(build_py):
    """build_py that also places ``sfp_mmcv_ops.pth`` beside the packages."""

    def run(self):
        super().run()
        # An editable wheel is made of what the install writes, not of build_lib.
        target = (self.get_finalized_command('install').install_lib if self.editable_mode
                  else self.build_lib)
        self.copy_file(PTH, os.path.join(target, PTH), preserve_mode=False)


setup(cmdclass={'build_py': BuildPyWithPth})
