"""Table of mIoU, methods by benchmarks (+ average), the reported numbers beside ours.

    python tools/summarize.py work_dirs [--methods sfp sclip] [--benchmarks voc21 ade20k]
                              [--protocol paper] [--out work_dirs/summary]

Reads <work_dirs>/<method>_vit-b16_<benchmark>/metrics.json (where tools/test.py writes
by default; the latest run of each), or <work_dirs>/<protocol>/... for runs under a
protocol, beside the protocol's reference numbers; prints a markdown table and writes
<out>.md and <out>.csv atomically (default <work_dirs>[/<protocol>]/summary).  The rows
are the methods run there unless --methods names them; a run still partial (killed, or
going on) shows its images done / total.  An earlier summary holding results the new one
lacks is kept as <out>.previous.md/.csv, with a note.  A folder holding none of these runs
is an error.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.benchmarks import PAPER_BENCHMARKS, get_benchmark  # noqa: E402
from sfp.evaluation import write_summary  # noqa: E402
from sfp.protocols import load_protocol, protocol_root  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_root', help='folder holding one work dir per run')
    parser.add_argument('--out', help='output path without suffix (default '
                                      '<work_root>[/<protocol>]/summary)')
    parser.add_argument('--protocol', help="the runs' protocol (name or file), if any")
    parser.add_argument('--methods', nargs='+',
                        help='rows (default: every method with a run in the folder)')
    parser.add_argument('--benchmarks', nargs='+', default=PAPER_BENCHMARKS,
                        help="columns (default: the paper's eight)")
    args = parser.parse_args(argv)
    try:
        for name in args.benchmarks:
            get_benchmark(name)
        protocol = load_protocol(args.protocol) if args.protocol else None
        out = args.out or str(protocol_root(args.work_root, protocol and protocol.name) /
                              'summary')
        table = write_summary(args.work_root, out, args.methods, args.benchmarks, protocol)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(table, end='')
    print(f'written: {out}.md, {out}.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())
