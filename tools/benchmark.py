"""Speed and memory of SFP: batched, the release's way (one crop at a time, attention
weights from every block), and the floor (a plain batched forward of the same ViT on the
same crops).

    python tools/benchmark.py [--sizes 448x336 512x384 1120x560] [--backbone ViT-B/16]
        [--random] [--precision fp16] [--device cuda] [--images 128] [--image-batch 16]
        [--modes sfp release floor] [--json out.json [--overwrite]]

--backbone is a CLIP name or checkpoint; with --random, a published architecture with
random weights (speed does not depend on the weights).  Each (size, mode) runs in its own
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

MODES = ('sfp', 'release', 'floor')


def build_segmentor(cfg: dict):
    from sfp import clip
    from sfp.models import SFPSegmentor

    backbone = (clip.random_model(cfg['backbone']) if cfg['random'] else cfg['backbone'])
    return SFPSegmentor(backbone, name_path=str(REPO / 'configs/classnames/cls_voc21.txt'),
                        device=cfg['device'], precision=cfg['precision'],
                        crop_batch_size=cfg['crop_batch_size'], templates=['a photo of a {}.'],
                        return_probs=False)


def release_predictor(segmentor):
    """The same parts, run the release's way: one crop per forward with every block's
    attention weights materialised; each crop's logits upsampled to its window and summed
    into an input-size canvas, divided by the coverage counts, resized to the output size
    and post-processed there.  Returns ``predict(images, size) -> [(probs, labels)]``."""
    import torch.nn.functional as F

    from sfp.models import SFPEncoder, postprocess_logits, sliding_windows

    class ReleaseEquivalentEncoder(SFPEncoder):
        def _wants_attention(self, block: int) -> bool:
            return True

    enc = segmentor.encoder
    segmentor.encoder = ReleaseEquivalentEncoder(
        enc.visual, enc.detector, enc.mitigation, enc.enhancer, enc.integrator,
        enc.detect_block, enc.pre_guidance_block, enc.post_guidance_block,
        enc.similarity_threshold, enc.guidance_scale)
    segmentor.crop_batch_size = 1

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


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def measure(cfg: dict) -> dict:
    """One (size, mode) measurement; runs in a worker process."""
    from mmseg.structures import SegDataSample

    from sfp.models import sliding_windows

    torch.manual_seed(0)
    device = cfg['device']
    width, height = cfg['size']
    segmentor = build_segmentor(cfg)
    release_predict = release_predictor(segmentor) if cfg['mode'] == 'release' else None
    images = torch.randn(cfg['images'], 3, height, width, device=device)
    windows = sliding_windows(height, width, 224, 112)
    per_batch = 1 if cfg['mode'] == 'release' else cfg['image_batch']

    def run_sfp(batch):
        samples = [SegDataSample(metainfo=dict(ori_shape=(height, width)))
                   for _ in range(len(batch))]
        segmentor.predict(batch, samples)

    crop_batch = segmentor.crops_per_batch((224, 224))  # the floor batches crops as SFP does

    def run_floor(batch):
        crops = torch.stack([img[:, y1:y2, x1:x2] for img in batch
                             for y1, y2, x1, x2 in windows]).to(segmentor.dtype)
        for start in range(0, len(crops), crop_batch):
            segmentor.encoder.visual(crops[start:start + crop_batch])

    def run_release(batch):
        release_predict(batch, (height, width))

    run = dict(sfp=run_sfp, release=run_release, floor=run_floor)[cfg['mode']]
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
    return dict(mode=cfg['mode'], size=f'{width}x{height}', crops_per_image=len(windows),
                crop_batch=crop_batch,
                images_per_s=images_per_s, crops_per_s=images_per_s * len(windows),
                peak_memory_mb=peak_mb)


def run_worker(cfg: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, '--worker', json.dumps(cfg)],
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f'{cfg["mode"]} at {cfg["size"]} failed:\n{result.stderr[-2000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list) -> str:
    head = ('| size | crops/img | mode | crop batch | crops/s | images/s | peak MiB | vs floor | '
            'vs release |\n|---|---:|---|---:|---:|---:|---:|---:|---:|')
    lines = [head]
    for row in rows:
        lines.append(f"| {row['size']} | {row['crops_per_image']} | {row['mode']} | "
                     f"{row['crop_batch']} | "
                     f"{row['crops_per_s']:.1f} | {row['images_per_s']:.2f} | "
                     f"{row['peak_memory_mb']:.0f} | {row.get('vs_floor', '-')} | "
                     f"{row.get('vs_release', '-')} |")
    return '\n'.join(lines)


def parse_size(text: str):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from err
    return width, height


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[(448, 336), (512, 384), (1120, 560)],
                        help='input sizes after resizing, WIDTHxHEIGHT')
    parser.add_argument('--backbone', default='ViT-B/16')
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
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
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
    rows = []
    for size in args.sizes:
        results = {}
        for mode in args.modes:
            cfg = dict(mode=mode, size=size, backbone=args.backbone, random=args.random,
                       device=args.device, precision=precision, images=count,
                       image_batch=image_batch, crop_batch_size=args.crop_batch_size)
            results[mode] = run_worker(cfg)
            print(f"{results[mode]['size']} {mode}: {results[mode]['images_per_s']:.2f} "
                  f"images/s", file=sys.stderr)
        floor, release = results.get('floor'), results.get('release')
        for mode, row in results.items():
            if floor and mode != 'floor':
                row['vs_floor'] = f"{row['crops_per_s'] / floor['crops_per_s']:.2f}"
            if release and mode != 'release':
                row['vs_release'] = f"{row['images_per_s'] / release['images_per_s']:.1f}x"
            rows.append(row)
    device_name = torch.cuda.get_device_name() if gpu else platform.processor() or 'cpu'
    header = (f'backbone {args.backbone}{" (random weights)" if args.random else ""}, '
              f'{precision}, {args.device} ({device_name}), {count} images per measurement, '
              f'{image_batch} images per predict call')
    print(header)
    print(table(rows))
    if args.json:
        from sfp.utils import atomic_write_text
        atomic_write_text(args.json, json.dumps(dict(setting=header, results=rows), indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
