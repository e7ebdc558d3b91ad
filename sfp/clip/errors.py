"""Errors raised while finding, downloading and reading checkpoints: those of
:mod:`sfp.weights`, shared by every tower family, named here for CLIP's users."""
from ..weights import (  # noqa: F401
    CheckpointError,
    CheckpointNotFoundError,
    ChecksumMismatchError,
    UnknownModelError,
)
