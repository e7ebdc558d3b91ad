"""Speed and memory of every method, beside SFP the release's way (one crop at a time,
attention weights from every block) and the floor (a plain batched forward of the same
ViT on the same crops).

    python tools/benchmark.py [--sizes 448x336 512x384 1120x560] [--backbone ViT-B/16]
        [--vfm dino_vitb8] [--random] [--precision fp16] [--device cuda] [--images 128]
        [--image-batch 16] [--methods sfp clip naclip+pamr naclip@whole+pamr ...]
        [--no-release] [--json out.json [--overwrite]]

Each method runs batched with the settings of its model base
``configs/_base_/models/<method>_vit-b16.py`` (window, crop and stride, thresholds),
except PAMR, which is off unless the mode says ``+pamr`` (then with the base's steps, or
10): ``naclip`` and ``naclip+pamr`` differ by PAMR alone, so PAMR's cost has a line of its
own.  ``@whole`` encodes each image whole instead (``naclip@whole+pamr`` is NACLIP's
released VOC setting, ``resclip@whole`` ResCLIP's).  ResCLIP's first-pass PAMR belongs to
its encoder and runs in every ResCLIP row; the PAMR column counts the final one only.
The ``window`` column says what each row ran.

A method that also reads a vision foundation model (ProxyCLIP, CASS, CorrCLIP) has a floor
of its own, ``floor/<method>``: CLIP's plain batched forward plus the VFM's, on that
method's crops (its window, padding included), in its crop batches; its ``vs floor`` is
against that row.  A method that reads class-agnostic regions (CorrCLIP) gets fixed
synthetic ones (:class:`GridRegions`), as from mask files: generating masks is not part
of its row.

--backbone is a CLIP name or checkpoint, --vfm the VFM's name or checkpoint; with
--random, published architectures with random weights (speed does not depend on the
weights).  When the VFM cannot be had, the default method list leaves its methods out
(with a note); asking for them is an error.  Each (size, mode) runs in its own
process so that its peak memory is its own: GPU memory allocated by PyTorch, or the
process's peak resident memory on the CPU.  Prints a table and writes JSON atomically
(never over an earlier file without --overwrite).
"""
import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sfp.masks import MaskSource, RegionMasks  # noqa: E402

FLOOR, RELEASE = 'floor', 'release'
METHODS = ('sfp', 'clip', 'maskclip', 'clearclip', 'sclip', 'naclip', 'naclip+pamr',
           'naclip@whole+pamr', 'scclip', 'cliptrase', 'proxyclip', 'resclip', 'resclip@whole',
           'cass', 'corrclip')
DEFAULT_PAMR_STEPS = 10
CLASS_FILE = REPO / 'configs' / 'classnames' / 'cls_voc21.txt'


def parse_mode(mode: str) -> Tuple[str, bool, bool]:
    """``method[@whole][+pamr]`` -> (method, whole image, PAMR); a bad one is a ValueError."""
    from sfp.apis import check_method

    rest, pamr = (mode[:-len('+pamr')], True) if mode.endswith('+pamr') else (mode, False)
    method, whole = (rest[:-len('@whole')], True) if rest.endswith('@whole') else (rest, False)
    return check_method(method), whole, pamr


def vfm_floor(mode: str) -> Optional[str]:
    """The floor mode of a method mode that reads a VFM (``floor/<method>``), else None."""
    from sfp.apis import method_vfm

    method = parse_mode(mode)[0]
    return f'{FLOOR}/{method}' if method_vfm(method) is not None else None


def vfm_missing(vfm: str, modes: Sequence[str]) -> Optional[str]:
    """Why the VFM the modes need cannot be had (None: it can, or none needs one)."""
    from sfp.clip import CheckpointError
    from sfp.vfm import resolve_vfm_checkpoint

    if not any(vfm_floor(mode) for mode in modes):
        return None
    try:
        resolve_vfm_checkpoint(vfm)
    except CheckpointError as err:
        return str(err)
    return None


def method_settings(mode: str) -> dict:
    """The segmentor arguments of a method mode: its base config, PAMR and window as the
    mode says."""
    from sfp.apis import method_defaults

    method, whole, pamr = parse_mode(mode)
    settings = method_defaults(method)
    settings['pamr_steps'] = (settings.get('pamr_steps') or DEFAULT_PAMR_STEPS) if pamr else 0
    if whole:
        settings['slide_crop'] = 0
    return settings


class GridRegions(MaskSource):
    """A mask source of fixed synthetic regions for timing (any image, no file): blocks of
    ``side`` pixels, every fifth unsegmented (id 0), about as many regions as the
    release's SAM2 masks give a 336-pixel crop."""

    def __init__(self, side: int = 48):
        self.side = side

    def __call__(self, image_path: Optional[str], size: Tuple[int, int]) -> RegionMasks:
        rows = torch.arange(size[0])[:, None] // self.side
        cols = torch.arange(size[1])[None, :] // self.side
        ids = rows * (size[1] // self.side + 1) + cols + 1
        return RegionMasks.from_label_map(torch.where(ids % 5 == 0, 0, ids))


def build_segmentor(cfg: dict, **settings):
    """A segmentor on the benchmark's backbone, VOC's 21 classes and one template (and
    :class:`GridRegions` for a method that reads regions)."""
    from sfp import clip
    from sfp.models import SFPSegmentor
    from sfp.registry import ENCODERS

    backbone = clip.random_model(cfg['backbone']) if cfg['random'] else cfg['backbone']
    arguments = dict(device=cfg['device'], precision=cfg['precision'],
                     crop_batch_size=cfg['crop_batch_size'], templates=['a photo of a {}.'],
                     return_probs=False, text_cache=False)
    arguments.update(settings)
    if 'vfm_path' in arguments:  # the method reads a VFM: the benchmark's
        from sfp.vfm import random_vfm
        arguments['vfm_path'] = random_vfm(cfg['vfm']) if cfg['random'] else cfg['vfm']
    encoder = arguments.get('encoder')
    if encoder and ENCODERS.get(encoder['type']).uses_masks:
        arguments['masks'] = GridRegions()
    return SFPSegmentor(backbone, name_path=str(CLASS_FILE), **arguments)


def build_release_segmentor(cfg: dict):
    """SFP's segmentor run the release's way: one crop per forward, every walked block's
    attention weights materialised (``materialise_all_attention``); the walk itself is
    the encoder's own, so every setting (``stream_mitigation_blocks`` included) holds."""
    segmentor = build_segmentor(cfg, **dict(method_settings('sfp'), crop_batch_size=1))
    segmentor.encoder.materialise_all_attention = True
    return segmentor


def release_predictor(segmentor) -> Callable:
    """The segmentor's parts run the release's way: one crop per forward; each crop's
    logits upsampled to its window and summed into an input-size canvas, divided by the
    coverage counts, resized to the output size and post-processed there.  Build the
    segmentor with :func:`build_release_segmentor` for the release's attention weights too.
    Returns ``predict(images, size) -> [(probs, labels)]``."""
    import torch.nn.functional as F

    from sfp.models import postprocess_logits, sliding_windows

    def resize(x, size):
        return F.interpolate(x[None], size=size, mode='bilinear', align_corners=False)[0]

    def predict(images, size):
        results = []
        for img in images:
            total = img.new_zeros((segmentor.num_queries, *img.shape[-2:]),
                                  dtype=segmentor.compute_dtype)
            count = torch.zeros_like(total[:1])
            for y1, y2, x1, x2 in sliding_windows(*img.shape[-2:], segmentor.slide_crop,
                                                  segmentor.slide_stride):
                grid = segmentor.grid_logits(img[None, :, y1:y2, x1:x2])[0]
                total[:, y1:y2, x1:x2] += resize(grid, (y2 - y1, x2 - x1))
                count[:, y1:y2, x1:x2] += 1
            results.append(postprocess_logits(
                resize(total / count, size), segmentor.query_idx, segmentor.num_classes,
                segmentor.logit_scale, segmentor.prob_thd, segmentor.area_thd))
        return results

    return predict


def windows_of(segmentor, height: int, width: int) -> list:
    """The crops (y1, y2, x1, x2) the segmentor encodes for an image of this size."""
    from sfp.models import sliding_windows

    if segmentor.slide_crop == 0:
        return [(0, height, 0, width)]
    return sliding_windows(height, width, segmentor.slide_crop, segmentor.slide_stride)


def crops_of(segmentor, image: torch.Tensor) -> List[torch.Tensor]:
    """The crops the segmentor encodes for a (3, H, W) image, padded as it pads them."""
    from sfp.models import SlidingWindowLayout

    if segmentor.slide_crop == 0:
        return [image]
    stride = segmentor.encoder.logit_stride
    pad = segmentor.pad_crops
    layout = SlidingWindowLayout.build(*image.shape[-2:], segmentor.slide_crop,
                                       segmentor.slide_stride, stride,
                                       stride if pad is True else int(pad))
    return [layout.crop(image, r, c) for r, c, _ in layout.windows()]


def window_label(segmentor) -> str:
    if segmentor.slide_crop == 0:
        return 'whole'
    return f'slide {segmentor.slide_crop}/{segmentor.slide_stride}'


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def measure(cfg: dict) -> dict:
    """One (size, mode) measurement; runs in a worker process."""
    from mmseg.structures import SegDataSample

    torch.manual_seed(0)
    device, mode = cfg['device'], cfg['mode']
    width, height = cfg['size']
    floor_of = mode.split('/', 1)[1] if mode.startswith(f'{FLOOR}/') else None
    if mode == RELEASE:
        segmentor = build_release_segmentor(cfg)
    elif mode == FLOOR:  # the floor runs SFP's ViT on SFP's crops, in SFP's crop batches
        segmentor = build_segmentor(cfg, **method_settings('sfp'))
    else:  # a VFM method's floor: its CLIP and VFM on its crops, in its crop batches
        segmentor = build_segmentor(cfg, **method_settings(floor_of or mode))
    images = torch.randn(cfg['images'], 3, height, width, device=device)
    windows = windows_of(segmentor, height, width)
    crop_size = tuple(crops_of(segmentor, images[0])[0].shape[-2:])
    crop_batch = segmentor.crops_per_batch(crop_size)
    per_batch = 1 if mode == RELEASE else cfg['image_batch']

    def run_batched(batch):
        samples = [SegDataSample(metainfo=dict(ori_shape=(height, width)))
                   for _ in range(len(batch))]
        segmentor.predict(batch, samples)

    def run_floor(batch):
        crops = torch.stack([crop for img in batch
                             for crop in crops_of(segmentor, img)]).to(segmentor.dtype)
        for start in range(0, len(crops), crop_batch):
            segmentor.encoder.visual(crops[start:start + crop_batch])
            if floor_of:
                segmentor.encoder.vfm(crops[start:start + crop_batch])

    if mode == RELEASE:
        release_predict = release_predictor(segmentor)

        def run(batch):
            release_predict(batch, (height, width))
    else:
        run = run_floor if mode == FLOOR or floor_of else run_batched
    with torch.no_grad():
        run(images[:per_batch])  # warm-up (kernels, allocator)
        synchronize(device)
        if device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for i in range(0, cfg['images'], per_batch):
            run(images[i:i + per_batch])
        synchronize(device)
        seconds = time.perf_counter() - start
    if device.startswith('cuda'):
        peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    images_per_s = cfg['images'] / seconds
    return dict(mode=mode, size=f'{width}x{height}', window=window_label(segmentor),
                pamr_steps=segmentor.pamr.num_iter if segmentor.pamr is not None else 0,
                crops_per_image=len(windows), crop_batch=crop_batch,
                images_per_s=images_per_s, crops_per_s=images_per_s * len(windows),
                peak_memory_mb=peak_mb)


def run_worker(cfg: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, '--worker', json.dumps(cfg)],
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f'{cfg["mode"]} at {cfg["size"]} failed:\n{result.stderr[-2000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_ratios(results: dict) -> None:
    """Each row's speed relative to the floor and to the release, of the same size and
    run, in images/s (in crops/s too where the crops are the floor's)."""
    release = results.get(RELEASE)
    for mode, row in results.items():
        floor = None if mode.startswith(FLOOR) else results.get(
            (mode != RELEASE and vfm_floor(mode)) or FLOOR)
        if floor:
            row['vs_floor'] = f"{row['images_per_s'] / floor['images_per_s']:.2f}"
        if release and mode != RELEASE:
            row['vs_release'] = f"{row['images_per_s'] / release['images_per_s']:.1f}x"


def pamr_costs(results: dict) -> List[str]:
    """One line per ``X+pamr`` mode measured beside ``X``: the time PAMR adds."""
    lines = []
    for mode, row in results.items():
        base = results.get(mode[:-len('+pamr')]) if mode.endswith('+pamr') else None
        if base:
            added = 1e3 / row['images_per_s'] - 1e3 / base['images_per_s']
            lines.append(f"{row['size']}: PAMR ({row['pamr_steps']} steps) adds "
                         f"{added:.0f} ms per image ({mode} vs {base['mode']}, "
                         f"{row['window']})")
    return lines


def table(rows: Sequence[dict]) -> str:
    head = ('| size | mode | window | PAMR | crops/img | crop batch | crops/s | images/s | '
            'peak MiB | vs floor | vs release |\n'
            '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    lines = [head]
    for row in rows:
        lines.append(f"| {row['size']} | {row['mode']} | {row['window']} | "
                     f"{row['pamr_steps'] or '-'} | {row['crops_per_image']} | "
                     f"{row['crop_batch']} | {row['crops_per_s']:.1f} | "
                     f"{row['images_per_s']:.2f} | {row['peak_memory_mb']:.0f} | "
                     f"{row.get('vs_floor', '-')} | {row.get('vs_release', '-')} |")
    return '\n'.join(lines)


def parse_size(text: str) -> Tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from err
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return width, height


def parse_method_mode(text: str) -> str:
    try:
        parse_mode(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'{err} (a mode is method[@whole][+pamr])') from err
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(448, 336), (512, 384), (1120, 560)],
                        help='input sizes after resizing, WIDTHxHEIGHT')
    parser.add_argument('--backbone', default='ViT-B/16')
    parser.add_argument('--vfm', default='dino_vitb8',
                        help='vision foundation model of the methods that read one: a name '
                             '(with --random, its architecture) or a checkpoint')
    parser.add_argument('--random', action='store_true',
                        help='random weights of the --backbone architecture')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'])
    parser.add_argument('--images', type=int,
                        help='images per measurement (default: 128 on a GPU, 4 on the CPU)')
    parser.add_argument('--image-batch', type=int,
                        help='images per predict call (default: 16 on a GPU, as the '
                             'evaluation configs batch them; 4 on the CPU)')
    parser.add_argument('--crop-batch-size', type=int,
                        help='crops per forward (default: sized to the memory budget)')
    parser.add_argument('--methods', nargs='+', type=parse_method_mode, default=list(METHODS),
                        metavar='MODE', help='method modes, method[@whole][+pamr] (default: '
                                             f'{" ".join(METHODS)})')
    parser.add_argument('--no-release', action='store_true',
                        help='skip the release-equivalent SFP mode (the slowest)')
    parser.add_argument('--json', help='write the results here (default: print only)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --json')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    if args.json and Path(args.json).exists() and not args.overwrite:
        parser.error(f'{args.json} exists: pass --overwrite to replace it, or another --json')
    gpu = args.device.startswith('cuda')
    precision = args.precision or ('fp16' if gpu else 'fp32')
    count = args.images or (128 if gpu else 4)
    image_batch = args.image_batch or (16 if gpu else 4)
    methods = list(dict.fromkeys(args.methods))
    missing = None if args.random else vfm_missing(args.vfm, methods)
    if missing and args.methods is not parser.get_default('methods'):
        parser.error(missing)
    if missing:  # the default list: measure the others
        print(f'note: leaving out {", ".join(m for m in methods if vfm_floor(m))}: {missing}',
              file=sys.stderr)
        methods = [m for m in methods if not vfm_floor(m)]
    floors = [f for f in dict.fromkeys(map(vfm_floor, methods)) if f]
    modes = [FLOOR] + ([] if args.no_release else [RELEASE]) + floors + methods
    rows, notes = [], []
    for size in args.sizes:
        results = {}
        for mode in modes:
            cfg = dict(mode=mode, size=size, backbone=args.backbone, vfm=args.vfm,
                       random=args.random, device=args.device, precision=precision, images=count,
                       image_batch=image_batch, crop_batch_size=args.crop_batch_size)
            results[mode] = run_worker(cfg)
            print(f"{results[mode]['size']} {mode}: {results[mode]['images_per_s']:.2f} "
                  f"images/s", file=sys.stderr)
        add_ratios(results)
        rows.extend(results.values())
        notes.extend(pamr_costs(results))
    device_name = torch.cuda.get_device_name() if gpu else platform.processor() or 'cpu'
    vfm = f', VFM {args.vfm}' if floors else ''
    header = (f'backbone {args.backbone}{vfm}{" (random weights)" if args.random else ""}, '
              f'{precision}, {args.device} ({device_name}), {count} images per measurement, '
              f'{image_batch} images per predict call')
    print(header)
    print(table(rows))
    print('\n'.join(notes))
    if args.json:
        from sfp.utils import atomic_write_text
        atomic_write_text(args.json, json.dumps(dict(setting=header, results=rows,
                                                     pamr=notes), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
