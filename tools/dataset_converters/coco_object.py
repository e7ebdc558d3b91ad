"""Build COCO-Object label maps (background + 80 things) for SFP's COCOObjectDataset.

From COCO instance annotations (pycocotools):
    python tools/dataset_converters/coco_object.py instances \
        --ann data/coco/annotations/instances_val2017.json --images data/coco/val2017 \
        --out data/coco_object [--crowd ignore|class|background]
From COCO-Stuff stuffthingmaps (the masks behind the published numbers):
    python tools/dataset_converters/coco_object.py stuffthingmaps \
        --maps data/coco_stuff/stuffthingmaps_trainval2017/val2017 \
        --images data/coco/val2017 --out data/coco_object

Output: <out>/images/<split>/*.jpg (links to --images) and
<out>/annotations/<split>/<stem>_instanceTrainIds.png.  See sfp/datasets/converters.py
for how overlaps and crowd regions are labelled.  Rerunning is safe: identical maps are
skipped, different ones are an error unless --overwrite.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sfp.datasets import converters  # noqa: E402


def link_images(images: Path, target: Path, mode: str) -> int:
    """Make the images visible under <out>/images/<split> (symlink or copy)."""
    if mode == 'none':
        return 0
    if not images.is_dir():
        raise FileNotFoundError(f'image folder not found: {images}')
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for src in sorted(images.glob('*.jpg')):
        dst = target / src.name
        if dst.exists() or dst.is_symlink():
            continue
        if mode == 'symlink':
            os.symlink(src.resolve(), dst)
        else:
            shutil.copy2(src, dst)
        count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='source', required=True)
    inst = sub.add_parser('instances', help='from COCO instances JSON')
    inst.add_argument('--ann', required=True, help='instances_<split>.json')
    inst.add_argument('--crowd', choices=converters.CROWD_MODES, default='ignore',
                      help='label of crowd regions (default: ignore = 255)')
    stuff = sub.add_parser('stuffthingmaps', help='from COCO-Stuff stuffthingmaps')
    stuff.add_argument('--maps', required=True, help='stuffthingmaps_trainval2017/<split>')
    for p in (inst, stuff):
        p.add_argument('--images', required=True, help='COCO image folder of the split')
        p.add_argument('--out', required=True, help='output root (COCOObjectDataset data_root)')
        p.add_argument('--split', default='val2017')
        p.add_argument('--link', choices=['symlink', 'copy', 'none'], default='symlink',
                       help='how images appear under <out>/images/<split>')
        p.add_argument('--overwrite', action='store_true',
                       help='replace existing label maps that differ')
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if args.source == 'instances':
            counts = converters.convert_coco_instances(args.ann, out, args.split, args.crowd,
                                                       args.overwrite)
        else:
            counts = converters.convert_stuffthingmaps(args.maps, out, args.split,
                                                       args.overwrite)
        linked = link_images(Path(args.images), out / 'images' / args.split, args.link)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'label maps: {counts["written"]} written, {counts["unchanged"]} unchanged, '
          f'{counts["replaced"]} replaced; images added: {linked}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
