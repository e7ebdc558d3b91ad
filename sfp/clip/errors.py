"""Errors raised while finding, downloading and reading CLIP checkpoints."""
import re

# The library's messages name its arguments; a command-line tool takes them as flags.
_ARGUMENT_FLAGS = {'clip_path': '--clip-path', 'vfm_path': '--vfm-path'}


class CheckpointError(RuntimeError):
    """A CLIP checkpoint cannot be found, fetched or read."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path, and none could be downloaded."""


class ChecksumMismatchError(CheckpointError):
    """A file's sha256 differs from the one published for the model."""


class UnknownModelError(CheckpointError, ValueError):
    """A model name that is neither a known CLIP model nor an existing file."""


def for_command_line(message: object) -> str:
    """An error message as a command-line tool shows it: the weights arguments it names
    (``clip_path``, ``vfm_path``) become the tools' flags (``--clip-path``, ...)."""
    return re.sub(r'(?<![\w.-])(clip_path|vfm_path)(?![\w-])',
                  lambda m: _ARGUMENT_FLAGS[m.group(1)], str(message))
