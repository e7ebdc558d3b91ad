"""The benchmark table for shell scripts: ``python tools/benchmarks.py list|plan``.

    python tools/benchmarks.py list                   # the paper's eight benchmarks
    python tools/benchmarks.py plan --methods sfp sclip [--protocol paper] -- voc21 ade20k

``plan`` prints one line per method and benchmark: method, benchmark, config, data root
(relative to the data folder) and work dir (relative to the work folder: the config's
name, under a protocol ``<protocol>/<config name>``).  An unknown benchmark or protocol,
or a method without a config, is one line on stderr naming the known ones, and exit
status 2.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.benchmarks import CONFIGS_DIR, PAPER_BENCHMARKS, config_stem, did_you_mean, get_benchmark  # noqa: E402
from sfp.protocols import load_protocol  # noqa: E402


def known_methods() -> list:
    """Methods with a config folder (configs/<method>/<method>_vit-b16_*.py)."""
    return sorted(p.name for p in CONFIGS_DIR.iterdir()
                  if p.is_dir() and any(p.glob(f'{p.name}_*.py')))


def plan(methods, benchmarks, protocol=None) -> list:
    folder = load_protocol(protocol).name + '/' if protocol else ''
    lines = []
    for method in methods:
        for name in benchmarks:
            benchmark = get_benchmark(name)
            config = benchmark.config(method)
            if not config.is_file():
                methods_known = known_methods()
                hint = (did_you_mean(method, methods_known) if method not in methods_known
                        else f' ({config.relative_to(CONFIGS_DIR.parent)} does not exist)')
                raise ValueError(f'no config for method {method!r} on {name}{hint}; methods: '
                                 f'{", ".join(methods_known)}')
            lines.append(' '.join([method, name, str(config.relative_to(CONFIGS_DIR.parent)),
                                   benchmark.data_root, folder + config_stem(method, name)]))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('list', help="the paper's benchmarks, space separated")
    planner = sub.add_parser('plan', help='one line per method and benchmark')
    planner.add_argument('--methods', nargs='+', default=['sfp'])
    planner.add_argument('--protocol', help='a protocol name or file (see docs/protocols.md)')
    planner.add_argument('benchmarks', nargs='+')
    args = parser.parse_args(argv)
    if args.command == 'list':
        print(' '.join(PAPER_BENCHMARKS))
        return 0
    try:
        print('\n'.join(plan(args.methods, args.benchmarks, args.protocol)))
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
