"""Segment your own images with any vocabulary.

    python tools/demo.py IMAGES... [--vocab VOCAB] [--clip-path ViT-B/16] [--out-dir DIR]
        [--method sfp] [--vfm-path VFM] [--sam-path SAM] [--masks FOLDER_OR_GENERATOR]

IMAGES are files, folders (searched with their subfolders) or glob patterns.  VOCAB is a
preset (a benchmark of the table, listed below), a class-name file (one class per line,
synonyms after commas) or a comma list of classes with synonyms joined by '|'
("sky,person|people,car").  --method picks the method (listed below); a method that also
reads a vision foundation model takes it from --vfm-path (default: its config's, downloaded
once), and one that reads SAM (Trident) from --sam-path (default sam_vit_b).  A preset
brings the method's released setting on that benchmark (its class file, window,
thresholds, PAMR, short side) and the dataset's class names; options override them.
--clip-path, --vfm-path and --sam-path also take local checkpoint files (the tests' random
weights: tests/fixtures/tiny_clip_state_dict.pt and tiny_dino_vit8.pth).  --masks gives
the method class-agnostic regions: a folder of mask files (LaVG's <name>.pth or CorrCLIP's
<stem>.npz, e.g. from tools/generate_masks.py) or a generator ('PanopticCut', run on each
image); lavg reads them (its default is PanopticCut), and the overlay of any method then
shows their borders, with <name>_regions.png the regions alone.

For each image the demo writes <name>_overlay.png (the segmentation over the image at its
own size, with a legend panel of the classes found added on the right) and
<name>_labels.png (the label map: class index per pixel, the image's size).  <name> is the
file's stem, with its folder added when two inputs share a stem.  Outputs of an earlier
run with the same image and settings are kept; outputs made from another image or with
other settings are never silently kept nor replaced: --overwrite replaces them.  An image
that cannot be read or segmented is reported and the others go on.
"""
import argparse
import glob
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sfp.apis import (  # noqa: E402
    DEFAULT_SHORT_SIDE,
    PRESETS,
    available_methods,
    method_vfm,
    segment_images,
    vocabulary_setting,
)
from sfp.clip import CheckpointError  # noqa: E402
from sfp.datasets import ImageReadError, read_image  # noqa: E402
from sfp.models import SFPSegmentor  # noqa: E402
from sfp.utils import atomic_write_png, atomic_write_text  # noqa: E402
from sfp.utils.cli import for_command_line, is_test_weights  # noqa: E402
from sfp.visualization import (  # noqa: E402
    add_legend,
    colorize,
    draw_region_borders,
    make_palette,
    overlay,
)

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.gif'}
MANIFEST = 'sfp_demo_manifest.json'
# Options that override the setting of a preset (else of the method's base config).
OVERRIDES = ('logit_scale', 'prob_thd', 'area_thd', 'short_side', 'pm', 'purify', 'vfm_path',
             'sam_path', 'masks')


def collect_images(inputs):
    """Files, folder contents (recursively) and glob matches, in order, without
    duplicates; also the inputs that matched nothing, each with the reason."""
    found, missing = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.rglob('*')
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += images
            if not images:
                missing.append(f'folder {item} holds no image (looked for '
                               f'{", ".join(sorted(IMAGE_SUFFIXES))}, subfolders included)')
        elif path.is_file():
            found.append(path)
        else:
            matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))]
            found += [p for p in matches if p.is_file()]
            if not matches:
                missing.append(f'no image file, folder or glob match: {item}')
    return list(dict.fromkeys(p.resolve() for p in found)), missing


def output_names(paths):
    """A distinct output name per input: its stem; where stems clash, the path relative to
    the clashing files' common folder ('a/img.jpg' -> 'a_img'), then the suffix if still
    needed ('img.jpg', 'img.png' -> 'img_jpg', 'img_png'), then a number."""
    names = [p.stem for p in paths]
    for group in _clashes(names):
        root = os.path.commonpath([paths[i].parent for i in group])
        names_in_group = ['_'.join(paths[i].relative_to(root).with_suffix('').parts)
                          for i in group]
        for i, name in zip(group, names_in_group):
            names[i] = name
    for group in _clashes(names):
        for i in group:
            names[i] = f'{names[i]}_{paths[i].suffix.lstrip(".").lower()}'
    for group in _clashes(names):
        for number, i in enumerate(group[1:], start=2):
            names[i] = f'{names[i]}_{number}'
    return names


def _clashes(names):
    """Groups of indices of equal names."""
    groups = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def registry_lists() -> str:
    """The presets and methods, as the registries hold them today (for --help)."""
    vfm = [f'{m} ({method_vfm(m)})' for m in available_methods() if method_vfm(m)]
    return (f'presets: {", ".join(PRESETS)}\n'
            f'methods: {", ".join(available_methods())}\n'
            f'methods that also read a vision foundation model (default): {", ".join(vfm)}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog=f"{__doc__.split(chr(10) * 2, 2)[-1]}\n{registry_lists()}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument('--vocab', default='voc21',
                        help=f'preset ({", ".join(PRESETS)}), class file or comma list')
    parser.add_argument('--clip-path', default='ViT-B/16',
                        help="CLIP name ('ViT-B/16', downloaded once) or checkpoint file")
    parser.add_argument('--vfm-path',
                        help="vision foundation model of a method that reads one: name "
                             "('dino_vitb8', downloaded once) or checkpoint file (default: "
                             "the method's config's)")
    parser.add_argument('--sam-path',
                        help="SAM of a method that reads it (trident): name ('sam_vit_b', "
                             "downloaded once) or checkpoint file (default: the method's "
                             "config's)")
    parser.add_argument('--masks',
                        help="class-agnostic regions: a folder of mask files or a generator "
                             "('PanopticCut'); default: the method's (lavg: PanopticCut)")
    parser.add_argument('--out-dir', default='demo_outputs', help='where the PNGs go')
    parser.add_argument('--device', help='cuda, cpu ... (default: CUDA when available)')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'])
    parser.add_argument('--method', default='sfp',
                        help=f'method ({", ".join(available_methods())}; default sfp)')
    parser.add_argument('--pm', help="outlier detector (SOM, L2, LOF, ...; default: the "
                                     "method's)")
    parser.add_argument('--purify', action=argparse.BooleanOptionalAction,
                        help="detect and mitigate outliers before the last block (default: "
                             "on for sfp, off for the baselines, as released)")
    parser.add_argument('--short-side', type=int,
                        help="images are resized to this short side (default: the preset's, "
                             f"else {DEFAULT_SHORT_SIDE})")
    for option in ('--logit-scale', '--prob-thd', '--area-thd'):
        parser.add_argument(option, type=float,
                            help="default: the preset's, else the method's base config's")
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    return parser.parse_args(argv)


def resolve_settings(args):
    """Classes, legend names and the model setting (short side included): options over
    the method's preset over the method's defaults (see ``vocabulary_setting``)."""
    setting = vocabulary_setting(args.vocab, args.method)
    settings = dict(setting.model_kwargs, short_side=setting.short_side)
    for key in OVERRIDES:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return setting.classes, setting.display_names, settings


def main(argv=None) -> int:
    args = parse_args(argv)
    images, missing = collect_images(args.images)
    for message in missing:
        print(f'error: {message}', file=sys.stderr)
    if not images:
        print('error: nothing to segment', file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    try:
        classes, names, settings = resolve_settings(args)
        short_side = settings.pop('short_side')
        segmentor = SFPSegmentor(clip_path=args.clip_path, name_path=classes,
                                 device=args.device, precision=args.precision,
                                 return_probs=False, **settings)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f'error: {for_command_line(err)}', file=sys.stderr)
        return 2
    for weights in (segmentor.clip_checkpoint, settings.get('vfm_path')):
        if is_test_weights(weights):
            print(f'warning: {weights} holds the tests\' random weights, not a trained model: '
                  f'the outputs show the mechanics only', file=sys.stderr)
    # What an output depends on: outputs recorded with other values are not current.
    recipe = json.loads(json.dumps(dict(
        classes=classes, clip_path=str(args.clip_path), method=args.method,
        precision=str(segmentor.dtype), short_side=short_side, **settings), default=list))
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    palette = make_palette(len(names))
    failed, kept, stale = [], 0, []
    for path, name in tqdm(list(zip(images, output_names(images))), desc='Segmenting',
                           unit='image'):
        overlay_path, labels_path = out_dir / f'{name}_overlay.png', out_dir / f'{name}_labels.png'
        record = dict(source=str(path), **recipe)
        if not args.overwrite and (overlay_path.exists() or labels_path.exists()):
            if manifest.get(name) == record and overlay_path.exists() and labels_path.exists():
                kept += 1
            else:
                stale.append(name)
            continue
        try:
            image = read_image(path)
            prediction = segment_images(segmentor, [image], short_side, [path])[0]
        except ImageReadError as err:  # names the file itself
            failed.append(str(err))
            continue
        except Exception as err:  # one image's failure must not stop the others
            failed.append(f'{path}: {err}')
            continue
        labels = prediction.pred_sem_seg.data[0].cpu().numpy()
        present = [int(c) for c in np.unique(labels)]
        shown = overlay(image[:, :, ::-1], labels, palette)
        if 'pred_regions' in prediction:
            regions = prediction.pred_regions.data[0].cpu().numpy()
            shown = draw_region_borders(shown, regions)
            atomic_write_png(out_dir / f'{name}_regions.png', draw_region_borders(
                colorize(regions % 255 + 1, make_palette(256)), regions)[:, :, ::-1])
        figure = add_legend(shown, names, palette, present)
        atomic_write_png(overlay_path, figure[:, :, ::-1])
        atomic_write_png(labels_path, labels.astype(np.uint8 if len(names) <= 256 else np.uint16))
        manifest[name] = record
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + '\n')
    done = len(images) - len(failed) - kept - len(stale)
    print(f'{done} image(s) segmented into {out_dir}'
          + (f'; {kept} kept from an earlier run with the same image and settings' if kept
             else ''))
    for name in stale:
        print(f'error: {out_dir / name}_*.png exist from an earlier run with another image or '
              f'other settings; kept as they are (--overwrite replaces them, or choose '
              f'another --out-dir)', file=sys.stderr)
    for message in failed:
        print(f'error: {message}', file=sys.stderr)
    return 1 if failed or missing or stale else 0


if __name__ == '__main__':
    sys.exit(main())
