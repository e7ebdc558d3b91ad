"""Run one of the SFP paper's tables and print it beside the paper's numbers.

    python tools/paper_tables.py list
    python tools/paper_tables.py table1 --data-dir data            # Table 1, all methods
    python tools/paper_tables.py table2 --dry-run                  # its tools/test.py lines
    python tools/paper_tables.py table4 --summarize                # print what has run

Tables: table1 (methods x the eight benchmarks), table2 (SFP's modules on ClearCLIP),
table3 (the integrator's first block), table4 (ViT-B/32 and ViT-L/14), sup_table1 (the
enhancer's self-self attention), sup_table2 (PAMR on VOC20).  Every run is under the
paper's protocol unless --protocol says otherwise (a name, a protocol file, or none: each
config's own setting), in <work-dir>/<protocol>/<run>/, one after another on this
process's device; the table is printed and saved as <work-dir>/<protocol>/<table>.md and
.csv.  Runs made by `PROTOCOL=paper bash multi_test.sh` are the same runs as table1's.
See docs/protocols.md.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.benchmarks import get_benchmark  # noqa: E402
from sfp.clip import CheckpointError  # noqa: E402
from sfp.evaluation import write_tables  # noqa: E402
from sfp.paper_tables import (  # noqa: E402
    TABLES,
    get_table,
    missing_reason,
    resolve_protocol,
    run_table,
    table_commands,
    table_runs,
    table_summary,
)
from sfp.protocols import protocol_root  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('table', help=f'list, or one of: {", ".join(TABLES)}')
    parser.add_argument('--protocol', default='paper',
                        help="'paper' (default), a protocol file, or 'none'")
    parser.add_argument('--data-dir', default='data',
                        help='the folder holding every benchmark under its default root')
    parser.add_argument('--clip-path', help="weights for every row (default: each row's)")
    parser.add_argument('--vfm-path', help="second vision model of the rows that read one "
                                           "(ProxyCLIP; default: each row's)")
    parser.add_argument('--work-dir', default='work_dirs', help='work folder (work_dirs)')
    parser.add_argument('--benchmarks', nargs='+', help="columns (default: the table's)")
    parser.add_argument('--methods', nargs='+', help='only the rows of these methods')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='more overrides for every run, as tools/test.py takes them')
    what = parser.add_mutually_exclusive_group()
    what.add_argument('--dry-run', action='store_true',
                      help='print the tools/test.py command of every run, run nothing')
    what.add_argument('--summarize', action='store_true',
                      help='run nothing, print the table from the runs made so far')
    parser.add_argument('--skip-done', action='store_true',
                        help='skip runs whose work dir already holds metrics')
    return parser.parse_args(argv)


def list_tables() -> None:
    for name in TABLES:
        table = get_table(name)
        rows = [row for row in table.rows if not missing_reason(row)]
        print(f'{name}: {table.title} ({len(rows)} of {len(table.rows)} rows here; '
              f'{", ".join(table.benchmarks)})')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.table == 'list':
            list_tables()
            return 0
        table = get_table(args.table)
        for name in args.benchmarks or ():
            get_benchmark(name)
        protocol = resolve_protocol(args.protocol)
        runs = table_runs(table, args.benchmarks, args.methods)
        if args.dry_run:
            print('\n'.join(table_commands(runs, protocol, args.data_dir, args.work_dir,
                                           args.clip_path, args.cfg_options,
                                           args.vfm_path)))
            return 0
        failures = [] if args.summarize else run_table(
            runs, protocol, args.data_dir, args.work_dir, args.clip_path, args.cfg_options,
            args.skip_done, args.vfm_path)
        tables = table_summary(table, args.work_dir, protocol, args.benchmarks, args.methods,
                               require_runs=args.summarize)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    out = protocol_root(args.work_dir, protocol and protocol.name) / table.name
    write_tables(tables, out)
    print(tables['markdown'], end='')
    print(f'written: {out}.md, {out}.csv')
    for failure in failures:
        print(f'FAILED: {failure}', file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
