"""Text side of SFP: class-name files, prompt templates and per-query text features."""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .clip import CLIP, cache_dir, tokenize
from .utils import atomic_write

DEFAULT_TEMPLATES_FILE = Path(__file__).parent / 'data' / 'openai_imagenet_templates.txt'

PathLike = Union[str, Path]


def parse_class_names(lines: Sequence[str], source: str = 'class names',
                      allow_duplicates: bool = False) -> List[List[str]]:
    """One class per line, synonyms separated by commas (or semicolons, as in ProxyCLIP's
    released files) -> list of synonym lists.

    Trailing blank lines are ignored; a blank line between classes or an empty synonym
    is an error naming its line, since it would silently shift every later class index.
    A name given to two classes is an error naming both lines: its two queries score the
    same everywhere, so the later class could never win.  ``allow_duplicates`` keeps such
    a file as it is (a release's file, e.g. COCO-Object's "bed" among the background
    synonyms and as a class, reproduces its published numbers only that way).
    """
    lines = [line.rstrip('\r\n') for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f'{source} defines no class: expected one class name per line')
    classes = []
    for number, line in enumerate(lines, start=1):
        names = [name.strip() for name in re.split('[,;]', line)]
        if not any(names):
            raise ValueError(f'{source}, line {number} is empty; every line is one class '
                             f'(write its name, or synonyms separated by commas)')
        if not all(names):
            raise ValueError(f'{source}, line {number} has an empty synonym: {line!r}')
        if not allow_duplicates:
            _check_new_names(classes, names, number, source)
        classes.append(names)
    return classes


def _check_new_names(classes: Sequence[Sequence[str]], names: Sequence[str], number: int,
                     source: str) -> None:
    """Error naming the lines where a name of line ``number`` already stands."""
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f'{source}, line {number} names {name!r} twice')
        for earlier, synonyms in enumerate(classes, start=1):
            if name in synonyms:
                raise ValueError(
                    f'{source}, line {number} repeats {name!r} of line {earlier}: a name can '
                    f'stand for one class only (remove one; for a released class file kept '
                    f'as it is, pass allow_duplicate_names=True)')


def read_class_names(path: PathLike, allow_duplicates: bool = False) -> List[List[str]]:
    """Read a class-name file (see :func:`parse_class_names`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'class-name file not found: {path.resolve()}')
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError as err:
        raise ValueError(f'{path} is not a UTF-8 text file of class names: {err}') from err
    return parse_class_names(text.splitlines(), source=str(path),
                             allow_duplicates=allow_duplicates)


def flatten_queries(classes: Sequence[Sequence[str]]) -> Tuple[List[str], List[int]]:
    """Synonym lists -> query names and the class index of each."""
    names = [name for synonyms in classes for name in synonyms]
    index = [i for i, synonyms in enumerate(classes) for _ in synonyms]
    return names, index


def load_vocabulary(name_file: Union[PathLike, Sequence[Sequence[str]]],
                    allow_duplicates: bool = False) -> List[List[str]]:
    """Synonym lists from a class-name file or from already split synonym lists."""
    if isinstance(name_file, (str, Path)):
        return read_class_names(name_file, allow_duplicates)
    return parse_class_names([', '.join(names) for names in name_file],
                             allow_duplicates=allow_duplicates)


def read_templates(path: Optional[PathLike] = None) -> List[str]:
    """Prompt templates, one per line with ``{}`` for the name (default: CLIP's 80)."""
    path = Path(path) if path else DEFAULT_TEMPLATES_FILE
    if not path.is_file():
        raise FileNotFoundError(f'template file not found: {path.resolve()}')
    templates = [t for t in path.read_text(encoding='utf-8').splitlines() if t.strip()]
    bad = [t for t in templates if '{}' not in t]
    if bad or not templates:
        raise ValueError(f'{path}: every template needs a "{{}}" for the class name '
                         f'(offending: {bad[:3]})')
    return templates


@torch.no_grad()
def encode_queries(model: CLIP, names: Sequence[str], templates: Sequence[str],
                   batch_size: int = 512) -> torch.Tensor:
    """Per name: L2-normalised text embeddings of every prompt, averaged, re-normalised.

    Returns (len(names), embed_dim) in the model's dtype and device.
    """
    device = model.token_embedding.weight.device
    prompts = [template.format(name) for name in names for template in templates]
    tokens = tokenize(prompts)
    embeddings = torch.cat([
        F.normalize(model.encode_text(tokens[i:i + batch_size].to(device)), dim=-1)
        for i in range(0, len(prompts), batch_size)])
    per_name = embeddings.view(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(per_name, dim=-1)


def checkpoint_fingerprint(path: PathLike) -> str:
    """Identity of a checkpoint file for caching: resolved path, size, modification time."""
    stat = Path(path).stat()
    return f'{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}'


def build_query_features(model: CLIP, name_file: Union[PathLike, Sequence[Sequence[str]]],
                         templates: Optional[Union[PathLike, Sequence[str]]] = None,
                         batch_size: int = 512, checkpoint: Optional[PathLike] = None,
                         cache: Optional[PathLike] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Query features (Q, D) and each query's class index (Q,) for a vocabulary.

    ``name_file`` is a class-name file or already parsed synonym lists; ``templates`` a
    template file, a list of templates, or None for CLIP's 80 ImageNet templates.

    With ``checkpoint`` (the file ``model`` was loaded from), features are cached on disk
    under ``cache`` (default ``<cache_dir()>/text_features``), keyed by the checkpoint
    file, the query names, the templates, the dtype and the text tower's activation: a
    second start skips the text encoder, and any change to those is a different entry,
    never a stale one.
    """
    # Repeated names are the caller's decision (the segmentor refuses them unless told).
    classes = load_vocabulary(name_file, allow_duplicates=True)
    if templates is None or isinstance(templates, (str, Path)):
        templates = read_templates(templates)
    names, index = flatten_queries(classes)
    device = model.token_embedding.weight.device
    query_idx = torch.tensor(index, dtype=torch.long, device=device)
    entry = None
    if checkpoint is not None:
        # The activation too: a bare state dict runs with whichever the caller names.
        key = json.dumps([checkpoint_fingerprint(checkpoint), names, list(templates),
                          str(model.dtype), model.config.text_activation])
        folder = Path(cache) if cache else cache_dir() / 'text_features'
        entry = folder / f'{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt'
        if entry.is_file():
            try:
                stored = torch.load(entry, map_location=device, weights_only=True)
                if stored['key'] == key:
                    return stored['features'], query_idx
            except Exception:  # a damaged entry is recomputed and rewritten
                pass
    features = encode_queries(model, names, list(templates), batch_size)
    if entry is not None:
        try:
            with atomic_write(entry) as f:
                torch.save({'key': key, 'features': features.cpu()}, f)
        except OSError as err:  # a read-only cache only costs the next start time
            warnings.warn(f'could not cache text features in {entry.parent}: {err}',
                          stacklevel=2)
    return features, query_idx
