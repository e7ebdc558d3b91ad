"""Time and peak memory of label propagation (LPOSS / LPOSS+) on one image, each level on
a line of its own, beside the same method without it.

    python tools/benchmark_propagation.py [--size 2048x1024] [--short-side 448]
        [--method lposs] [--device cpu] [--precision fp32] [--classes 19] [--repeats 1]

The image (random pixels, a Cityscapes frame's size by default) is resized to the short
side as the release's pipeline does (2048 x 1024 -> 896 x 448: 21 windows of 224, 4116
patch nodes, 401,408 pixel nodes).  CLIP ViT-B/16 and DINO ViT-B/16 have random weights
(speed and memory do not depend on them).  Each row runs in its own process, so that its
peak memory is its own: the process's peak resident memory on the CPU, PyTorch's peak
allocation on a GPU.  Rows: ``none`` (the method's encoder and post-processing alone),
``patch`` (+ the kNN graph over all windows' patches and its 10 CG steps), ``patch+pixel``
(+ LPOSS+'s pixel graph and its CG), ``pixel`` (the pixel level alone).
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LEVELS = {'none': None, 'patch': dict(), 'patch+pixel': dict(pixel_refine=True),
          'pixel': dict(patch=False, pixel_refine=True)}


def resized_size(width: int, height: int, short_side: int) -> tuple:
    """mmcv's keep-ratio rescale to (2048, short_side): (height, width)."""
    factor = min(2048 / max(width, height), short_side / min(width, height))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def run_row(args: argparse.Namespace, level: str) -> dict:
    """One row, in this process: build, warm up on a small image, time the full one."""
    import torch

    from sfp import clip
    from sfp.apis import method_defaults
    from sfp.models import SFPSegmentor
    from sfp.vfm import random_vfm

    settings = method_defaults(args.method)
    settings.pop('clip_path', None)
    settings.pop('clip_activation', None)
    propagation = LEVELS[level]
    settings['propagation'] = None if propagation is None else dict(
        settings.get('propagation') or {}, **propagation)
    settings.pop('vfm_path', None)
    if propagation is not None and propagation.get('patch', True):
        settings['vfm_path'] = random_vfm('dino_vitb16')
    names = [[f'class {i}'] for i in range(args.classes)]
    segmentor = SFPSegmentor(clip.random_model('ViT-B/16'), names, device=args.device,
                             precision=args.precision, templates=['a photo of a {}.'],
                             text_cache=False, **settings)
    height, width = resized_size(*args.size, args.short_side)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, height, width, generator=generator).to(args.device)
    segmentor.predict(image[None, :, :224, :336])  # warm-up
    if args.device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.repeats):
        segmentor.predict(image[None])
    if args.device == 'cuda':
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = (time.perf_counter() - start) / args.repeats
    return dict(level=level, input=f'{width}x{height}', seconds=round(seconds, 2),
                peak_mib=round(peak), device=args.device, precision=args.precision)


def parse_args(argv=None) -> argparse.Namespace:
    def size(text: str) -> tuple:
        try:
            width, height = (int(v) for v in text.lower().split('x'))
        except ValueError as err:
            raise argparse.ArgumentTypeError(f'{text!r}: a size is WIDTHxHEIGHT') from err
        return width, height

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=size, default=(2048, 1024), help='original WxH')
    parser.add_argument('--short-side', type=int, default=448)
    parser.add_argument('--method', default='lposs', help='a method (its base config)')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'fp16', 'bf16', 'fp64'))
    parser.add_argument('--classes', type=int, default=19, help='classes (Cityscapes: 19)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--levels', nargs='+', default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument('--row', choices=list(LEVELS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.row:
        print(json.dumps(run_row(args, args.row)))
        return
    rows = []
    passed = list(argv if argv is not None else sys.argv[1:])
    for level in args.levels:
        done = subprocess.run([sys.executable, __file__, *passed, '--row', level],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f'level {level} failed:\n{done.stderr.strip().splitlines()[-1]}')
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f'{level}: {rows[-1]}', file=sys.stderr, flush=True)
    print('| level | input | device | precision | s / image | peak MiB |\n'
          '|---|---|---|---|---:|---:|')
    for row in rows:
        print(f"| {row['level']} | {row['input']} | {row['device']} | {row['precision']} | "
              f"{row['seconds']} | {row['peak_mib']} |")


if __name__ == '__main__':
    main()
