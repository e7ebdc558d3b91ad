"""Build PASCAL Context label maps (background + 59 classes) from the official annotations.

    python tools/dataset_converters/pascal_context.py --mat-dir data/trainval \
        --out data/VOCdevkit/VOC2010/SegmentationClassContext \
        [--split data/VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt]

--mat-dir holds the official PASCAL-Context ``trainval/*.mat`` files (459-category
``LabelMap``).  Output PNGs hold 0 (background: every category outside the 59) and
1..59 (alphabetical, as the class files in configs/classnames); Context-60 evaluates all
60 labels, Context-59 ignores 0.  Rerunning is safe: identical maps are skipped,
different ones are an error unless --overwrite.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sfp.datasets import converters  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mat-dir', required=True, help='folder of official trainval/*.mat')
    parser.add_argument('--out', required=True, help='output folder of PNG label maps')
    parser.add_argument('--split', help='only the images listed in this file (one id a line)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing label maps that differ')
    args = parser.parse_args(argv)
    try:
        counts = converters.convert_context(args.mat_dir, args.out, args.split, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'label maps: {counts["written"]} written, {counts["unchanged"]} unchanged, '
          f'{counts["replaced"]} replaced')
    return 0


if __name__ == '__main__':
    sys.exit(main())
