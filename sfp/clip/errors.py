"""Errors raised while finding, downloading and reading CLIP checkpoints."""


class CheckpointError(RuntimeError):
    """A CLIP checkpoint cannot be found, fetched or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path, and none could be downloaded."""


class ChecksumMismatchError(CheckpointError):
    """A file's sha256 differs from the one published for the model."""


class UnknownModelError(CheckpointError, ValueError):
    """A model name that is neither a known CLIP model nor an existing file."""
