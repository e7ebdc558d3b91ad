"""What command-line tools say about the library's arguments and the tests' weights."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Union

# The library's messages name its arguments; a command-line tool takes them as flags.
ARGUMENT_FLAGS = {'clip_path': '--clip-path', 'vfm_path': '--vfm-path'}
# The tests' tiny random-weight checkpoints (CLIP, DINO, ...): a tool running one says
# that its results show the mechanics, not a trained model's behaviour.
TEST_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / 'tests' / 'fixtures'


def for_command_line(message: object) -> str:
    """An error message as a command-line tool shows it: the weights arguments it names
    (``clip_path``, ``vfm_path``) become the tools' flags (``--clip-path``, ...)."""
    pattern = r'(?<![\w.-])(' + '|'.join(ARGUMENT_FLAGS) + r')(?![\w-])'
    return re.sub(pattern, lambda m: ARGUMENT_FLAGS[m.group(1)], str(message))


def is_test_weights(path: Union[str, Path, None]) -> bool:
    """Whether ``path`` is one of the tests' random-weight checkpoints (tests/fixtures)."""
    try:
        file = Path(path).expanduser().resolve()
        return file.is_file() and file.parent == TEST_WEIGHTS_DIR.resolve()
    except (OSError, TypeError):
        return False
