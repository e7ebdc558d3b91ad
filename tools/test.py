"""Evaluate SFP on a benchmark: ``python tools/test.py CONFIG [options]``.

Examples:
    python tools/test.py configs/sfp/sfp_vit-b16_voc21.py --data-root data/VOCdevkit/VOC2012
    python tools/test.py configs/naclip/naclip_vit-b16_voc21.py --protocol paper
    torchrun --nproc_per_node=8 tools/test.py configs/sfp/sfp_vit-b16_ade20k.py --launcher pytorch

A run killed part-way goes on where it stopped when run again (see docs/evaluate.md).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from sfp.clip import CheckpointError  # noqa: E402
from sfp.evaluation import build_test_config, local_rank_from_args, parse_cfg_options, run_test  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate SFP with mmengine\'s Runner.')
    parser.add_argument('config', help='config file, e.g. configs/sfp/sfp_vit-b16_voc21.py')
    parser.add_argument('--data-root', help='dataset folder (overrides the config)')
    parser.add_argument('--clip-path', help="CLIP name ('ViT-B/16') or checkpoint file")
    parser.add_argument('--protocol',
                        help="run under a protocol instead of the config's own setting: a "
                             "name ('paper', configs/_protocols_/) or a protocol file; see "
                             "docs/protocols.md")
    parser.add_argument('--vfm-path', help="vision foundation model of a method that reads "
                                           "one (ProxyCLIP, CASS): name ('dino_vitb8') or "
                                           "file; other methods ignore it")
    parser.add_argument('--sam-path', help="SAM of a method that reads it (Trident): name "
                                           "('sam_vit_b') or file; other methods ignore it")
    parser.add_argument('--work-dir', help='logs and metrics (default work_dirs/<config>, '
                                           'under a protocol work_dirs/<protocol>/<config>)')
    parser.add_argument('--show-dir', help='save visualised predictions here')
    parser.add_argument('--out', help='save predicted label maps (PNG) here')
    parser.add_argument('--overwrite', action='store_true',
                        help='allow --show-dir/--out folders that already hold files')
    parser.add_argument('--resume', action=argparse.BooleanOptionalAction, default=True,
                        help="go on from the work dir's per-image record (the default): "
                             "only images not yet recorded are evaluated, and a finished "
                             "run prints its metrics at once; --no-resume sets the record "
                             "aside (kept as record-<time>) and evaluates every image")
    parser.add_argument('--verbose', action='store_true',
                        help="also print mmengine's environment and config dump and its "
                             "log lines (always in <work-dir>/<timestamp>/*.log)")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="override config entries, e.g. model.pm=LOF or "
                             "\"model.pm={'type':'LOF','n_neighbors':20}\"")
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher for distributed evaluation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def user_message(err: Exception) -> str:
    """The error's own message; for an error raised in a data-loader worker (whose text
    carries the worker's traceback), its last line."""
    text = str(err)
    if 'Original Traceback' in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1].split(': ', 1)[-1]
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    local_rank_from_args(args.local_rank)
    try:
        cfg = build_test_config(args.config, data_root=args.data_root, clip_path=args.clip_path,
                                vfm_path=args.vfm_path, sam_path=args.sam_path,
                                work_dir=args.work_dir,
                                cfg_options=parse_cfg_options(args.cfg_options),
                                launcher=args.launcher, show_dir=args.show_dir,
                                out_dir=args.out, overwrite=args.overwrite,
                                protocol=args.protocol, resume=args.resume)
        run_test(cfg, resume=args.resume, verbose=args.verbose)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError) as err:
        print(f'error: {user_message(err)}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
