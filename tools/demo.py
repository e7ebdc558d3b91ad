"""Segment your own images with any vocabulary.

    python tools/demo.py IMAGES... [--vocab VOCAB] [--clip-path ViT-B/16] [--out-dir DIR]

IMAGES are files, folders (their images, sorted) or glob patterns.  VOCAB is a preset
(voc21, voc20, context60, context59, coco_object, coco_stuff, cityscapes, ade20k, camvid),
a class-name file (one class per line, synonyms after commas) or a comma list of classes
with synonyms joined by '|' ("sky,person|people,car").  For each image the demo writes
<stem>_overlay.png (the segmentation over the image, with a legend of the classes found)
and <stem>_labels.png (the label map: class index per pixel) at the image's own size.
Existing outputs are kept unless --overwrite; an unreadable image is reported and skipped.
"""
import argparse
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sfp.apis import PRESETS, init_segmentor, resolve_vocabulary, segment_images  # noqa: E402
from sfp.clip import CheckpointError  # noqa: E402
from sfp.datasets import ImageReadError, read_image  # noqa: E402
from sfp.utils import atomic_write_png  # noqa: E402
from sfp.visualization import add_legend, make_palette, overlay  # noqa: E402

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.gif'}


def collect_images(inputs):
    """Files, folder contents and glob matches, in order, without duplicates."""
    found, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if matches:
                found += [p for p in matches if p.is_file()]
            else:
                missing.append(item)
    unique = list(dict.fromkeys(found))
    return unique, missing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], epilog=__doc__.split('\n\n', 2)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument('--vocab', default='voc21',
                        help=f'preset ({", ".join(PRESETS)}), class file or comma list')
    parser.add_argument('--clip-path', default='ViT-B/16',
                        help="CLIP name ('ViT-B/16', downloaded once) or checkpoint file")
    parser.add_argument('--out-dir', default='demo_outputs', help='where the PNGs go')
    parser.add_argument('--device', help='cuda, cpu ... (default: CUDA when available)')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'])
    parser.add_argument('--pm', default='SOM', help='outlier detector (SOM, L2, LOF, ...)')
    parser.add_argument('--short-side', type=int, default=336,
                        help='images are resized to this short side for inference')
    parser.add_argument('--logit-scale', type=float, default=40)
    parser.add_argument('--prob-thd', type=float, default=0.0)
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    images, missing = collect_images(args.images)
    for item in missing:
        print(f'error: no image file, folder or glob match: {item}', file=sys.stderr)
    if not images:
        print('error: nothing to segment', file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    try:
        classes = resolve_vocabulary(args.vocab)
        segmentor = init_segmentor(args.clip_path, classes, device=args.device,
                                   precision=args.precision, pm=args.pm,
                                   logit_scale=args.logit_scale, prob_thd=args.prob_thd,
                                   return_probs=False)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    names = segmentor.class_names
    palette = make_palette(len(names))
    failed, skipped = [], 0
    for path in tqdm(images, desc='Segmenting', unit='image'):
        overlay_path = out_dir / f'{path.stem}_overlay.png'
        labels_path = out_dir / f'{path.stem}_labels.png'
        if not args.overwrite and overlay_path.exists() and labels_path.exists():
            skipped += 1
            continue
        try:
            image = read_image(path)
        except ImageReadError as err:
            failed.append(str(err))
            continue
        labels = segment_images(segmentor, [image], args.short_side)[0]
        labels = labels.pred_sem_seg.data[0].cpu().numpy()
        present = [int(c) for c in np.unique(labels)]
        rgb = overlay(image[:, :, ::-1], labels, palette)
        figure = add_legend(rgb, names, palette, present)
        atomic_write_png(overlay_path, figure[:, :, ::-1])
        dtype = np.uint8 if len(names) <= 256 else np.uint16
        atomic_write_png(labels_path, labels.astype(dtype))
    done = len(images) - len(failed) - skipped
    print(f'{done} image(s) segmented into {out_dir}'
          + (f'; {skipped} kept from an earlier run (--overwrite to redo)' if skipped else ''))
    for message in failed:
        print(f'error: {message}', file=sys.stderr)
    return 1 if failed or missing else 0


if __name__ == '__main__':
    sys.exit(main())
