"""Table of mIoU per benchmark (+ average) from tools/test.py runs, the paper's beside it.

    python tools/summarize.py work_dirs [--out work_dirs/summary]

Reads <work_dirs>/<benchmark>/metrics.json (the latest run of each benchmark), prints a
markdown table and writes <out>.md and <out>.csv atomically.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.evaluation import BENCHMARKS, write_summary  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_root', help='folder holding one work dir per benchmark')
    parser.add_argument('--out', help='output path without suffix (default <work_root>/summary)')
    parser.add_argument('--benchmarks', nargs='+', default=BENCHMARKS,
                        help='benchmarks to list (default: the eight)')
    args = parser.parse_args(argv)
    out = args.out or str(Path(args.work_root) / 'summary')
    print(write_summary(args.work_root, out, args.benchmarks), end='')
    print(f'written: {out}.md, {out}.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())
