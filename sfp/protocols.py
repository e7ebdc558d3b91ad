"""Evaluation protocols: one setting under which every method runs.

A method's benchmark configs (``configs/<method>/<method>_vit-b16_<benchmark>.py``) hold its
release's own setting; that stays the default.  A protocol is a small config file,
``configs/_protocols_/<name>.py`` or any file of the same form, applied on top of any
method's benchmark config: it sets model arguments for every method and the test
pipeline's short side, per benchmark where it differs.  ``paper`` is the SFP paper's
common protocol (section 4.1).  A protocol file holds:

    reference = 'paper_table1'   # optional: numbers shown beside ours (REPORTED_TABLES)
    short_side = 336             # optional: the test Resize's short side
    short_side_per_benchmark = dict(cityscapes=560)   # optional
    model = dict(slide_crop=224, slide_stride=112, pamr_steps=0)   # optional
    model_per_benchmark = dict(voc21=dict(prob_thd=0.15))   # optional, over ``model``

Runs under a protocol keep their work dirs apart from the release-setting runs:
``<work_root>/<protocol>/<config name>/``.  See docs/protocols.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .benchmarks import (
    CONFIGS_DIR,
    REPORTED_TABLES,
    ReportedTable,
    benchmark_of_dataset,
    did_you_mean,
    get_benchmark,
)

PROTOCOLS_DIR = CONFIGS_DIR / '_protocols_'
PROTOCOL_KEYS = ('reference', 'short_side', 'short_side_per_benchmark', 'model',
                 'model_per_benchmark')
PathLike = Union[str, Path]


@dataclass(frozen=True)
class Protocol:
    """A protocol file, read.

    Attributes:
        name: the file's stem; runs go to ``<work_root>/<name>/``.
        path: the file.
        model: model arguments set for every method.
        short_side: the test pipeline's short side (None: each config's own).
        short_side_per_benchmark: benchmark name -> short side, where it differs.
        model_per_benchmark: benchmark name -> model arguments set over ``model`` there.
        reference: key of :data:`sfp.benchmarks.REPORTED_TABLES` whose numbers the
            summary shows beside ours (None: none).
    """

    name: str
    path: Path
    model: Dict[str, Any] = field(default_factory=dict)
    short_side: Optional[int] = None
    short_side_per_benchmark: Dict[str, int] = field(default_factory=dict)
    model_per_benchmark: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    reference: Optional[str] = None

    def short_side_for(self, benchmark: Optional[str]) -> Optional[int]:
        """The short side on ``benchmark`` (None: the config's own)."""
        return self.short_side_per_benchmark.get(benchmark, self.short_side)

    def model_for(self, benchmark: Optional[str]) -> Dict[str, Any]:
        """The model arguments set on ``benchmark``."""
        return dict(self.model, **self.model_per_benchmark.get(benchmark, {}))

    @property
    def model_keys(self) -> List[str]:
        """Every model argument the protocol sets on some benchmark."""
        keys = dict.fromkeys(self.model)
        for model in self.model_per_benchmark.values():
            keys.update(dict.fromkeys(model))
        return list(keys)

    @property
    def reference_table(self) -> Optional[ReportedTable]:
        return REPORTED_TABLES[self.reference] if self.reference else None

    @property
    def argument(self) -> str:
        """How ``--protocol`` names it: a built-in protocol by name, another by its file."""
        builtin = self.path.resolve().parent == PROTOCOLS_DIR.resolve()
        return self.name if builtin else str(self.path)


def available_protocols() -> List[str]:
    """Names of the protocols in ``configs/_protocols_/``."""
    return sorted(p.stem for p in PROTOCOLS_DIR.glob('*.py'))


def protocol_path(protocol: PathLike) -> Path:
    """The file of a protocol given by name (``paper``) or as a path to a file."""
    text = str(protocol)
    if text in available_protocols():
        return PROTOCOLS_DIR / f'{text}.py'
    path = Path(text).expanduser()
    if path.suffix == '.py' and path.is_file():
        return path
    known = available_protocols()
    raise ValueError(f'unknown protocol {text!r}{did_you_mean(text, known)}: give one of '
                     f'{", ".join(known)} or a protocol file (.py, see docs/protocols.md)')


def _check_benchmark(name: str, where: str) -> None:
    try:
        get_benchmark(name)
    except ValueError as err:
        raise ValueError(f'{where}: {err}') from None


def _check_short_side(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{where} must be a positive number of pixels, got {value!r}')
    return value


def load_protocol(protocol: Union[PathLike, Protocol]) -> Protocol:
    """Read and check a protocol file (by name or path); a Protocol is returned as it is.

    Raises ValueError naming the file for an unknown key, a bad short side, an unknown
    benchmark or reference table.
    """
    if isinstance(protocol, Protocol):
        return protocol
    from mmengine.config import Config

    path = protocol_path(protocol)
    where = f'protocol file {path}'
    if path.stem in available_protocols() and path.resolve() != \
            (PROTOCOLS_DIR / path.name).resolve():
        raise ValueError(f'{where}: {path.stem!r} is the name of a protocol of '
                         f'configs/_protocols_/ (its runs share work dirs); rename the file')
    try:
        values = {k: v for k, v in Config.fromfile(str(path)).to_dict().items()
                  if not k.startswith('_')}
    except Exception as err:  # a syntax or import error in the user's file
        raise ValueError(f'{where} cannot be read: {err}') from err
    for key in values:
        if key not in PROTOCOL_KEYS:
            raise ValueError(f'{where}: unknown setting {key!r}'
                             f'{did_you_mean(key, PROTOCOL_KEYS)}; a protocol sets '
                             f'{", ".join(PROTOCOL_KEYS)}')
    model = values.get('model', {})
    if not isinstance(model, dict):
        raise ValueError(f'{where}: model must be a dict of model arguments, got {model!r}')
    short_side = values.get('short_side')
    if short_side is not None:
        _check_short_side(short_side, f'{where}: short_side')
    per_benchmark = values.get('short_side_per_benchmark', {})
    if not isinstance(per_benchmark, dict):
        raise ValueError(f'{where}: short_side_per_benchmark must be a dict such as '
                         f'dict(cityscapes=560), got {per_benchmark!r}')
    for name, side in per_benchmark.items():
        _check_benchmark(name, f'{where}: short_side_per_benchmark')
        _check_short_side(side, f'{where}: short_side_per_benchmark[{name!r}]')
    model_per_benchmark = values.get('model_per_benchmark', {})
    if not isinstance(model_per_benchmark, dict) or not all(
            isinstance(v, dict) for v in model_per_benchmark.values()):
        raise ValueError(f'{where}: model_per_benchmark must map benchmarks to dicts of model '
                         f'arguments, such as dict(voc21=dict(prob_thd=0.15)); got '
                         f'{model_per_benchmark!r}')
    for name in model_per_benchmark:
        _check_benchmark(name, f'{where}: model_per_benchmark')
    reference = values.get('reference')
    if reference is not None and reference not in REPORTED_TABLES:
        raise ValueError(f'{where}: unknown reference {reference!r}'
                         f'{did_you_mean(str(reference), list(REPORTED_TABLES))}; known: '
                         f'{", ".join(REPORTED_TABLES)}')
    return Protocol(name=path.stem, path=path, model=model, short_side=short_side,
                    short_side_per_benchmark=per_benchmark,
                    model_per_benchmark=model_per_benchmark, reference=reference)


def set_short_side(pipeline: list, short_side: int, config: str) -> None:
    """Set the short side of the one Resize step of a test pipeline (its long-side cap
    stays)."""
    resizes = [step for step in pipeline if step.get('type') == 'Resize']
    if len(resizes) != 1:
        raise ValueError(f'{config}: a protocol sets the short side of the test pipeline\'s '
                         f'Resize step, but the pipeline has {len(resizes)} of them')
    long_side = resizes[0]['scale'][0]
    resizes[0]['scale'] = (long_side, short_side)


def apply_protocol(cfg, protocol: Protocol) -> None:
    """Set a protocol's model arguments and short side in a loaded benchmark config.

    The benchmark (for a per-benchmark short side) is the one whose dataset class the
    config evaluates.  ``cfg.protocol`` records the protocol's name.
    """
    benchmark = benchmark_of_dataset(cfg.test_dataloader.dataset.type)
    cfg.merge_from_dict(dict(model=protocol.model_for(benchmark)))
    short_side = protocol.short_side_for(benchmark)
    if short_side is not None:
        set_short_side(cfg.test_dataloader.dataset.pipeline, short_side, cfg.filename)
        if 'test_pipeline' in cfg:  # the config's own copy, kept consistent in its dump
            set_short_side(cfg.test_pipeline, short_side, cfg.filename)
    cfg.protocol = protocol.name


def protocol_root(work_root: PathLike, protocol: Optional[str]) -> Path:
    """Where runs under ``protocol`` keep their work dirs (the release settings' runs:
    ``work_root`` itself)."""
    return Path(work_root) / protocol if protocol else Path(work_root)
