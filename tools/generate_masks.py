"""Write class-agnostic masks for a dataset or a folder of images, one file per image.

    python tools/generate_masks.py SOURCE... --out-dir DIR [--generator PanopticCut]
        [--format lavg|corrclip] [--vfm-path dino_vitb8] [--imgsize 640] [--N 8] [--tau 0.3]
        [--set KEY=VALUE ...] [--device cuda] [--precision fp32] [--data-root ROOT]

SOURCE is a config (its test dataset's images; --data-root overrides its root), a folder
(its images, subfolders included) or image files.  --generator is a mask generator of
sfp.registry.MASK_GENERATORS (default LaVG's PanopticCut, on the DINO of --vfm-path);
--imgsize, --N, --tau and --precision are its options (the release's defaults 640, 8,
0.3), --set gives any generator argument.  The files are in the release's format of the
generator (--format: lavg = <name>.pth, corrclip = <stem>.npz) and are what a config's
maskpred_root / instance_mask_path reads.  Files already there are kept, so a run that
was stopped resumes; every file is written atomically.
"""
import argparse
import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.masks import FORMATS, MaskFileError, build_mask_generator  # noqa: E402
from sfp.masks.generate import dataset_images, generate_mask_files, images_in  # noqa: E402

#: Options that become generator arguments when given.
GENERATOR_OPTIONS = ('imgsize', 'N', 'tau', 'precision')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0], epilog=__doc__.split('\n\n', 2)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sources', nargs='+', help='a config, folders or image files')
    parser.add_argument('--out-dir', required=True, help='where the mask files go')
    parser.add_argument('--generator', default='PanopticCut', help='mask generator name')
    parser.add_argument('--format', choices=sorted(FORMATS),
                        help="file format (default: the generator's release's)")
    parser.add_argument('--vfm-path', default='dino_vitb8',
                        help="the generator's vision model: name (downloaded once) or file")
    parser.add_argument('--imgsize', type=int, help='PanopticCut: square side (640)')
    parser.add_argument('--N', type=int, help='PanopticCut: NCut rounds, masks per image (8)')
    parser.add_argument('--tau', type=float, help='PanopticCut: affinity threshold (0.3)')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'],
                        help='the vision model\'s precision (default: fp64 on the CPU, '
                             'fp32 on a GPU)')
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                        help='further generator arguments (Python literals)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda ...')
    parser.add_argument('--data-root', help="a config's dataset root")
    return parser.parse_args(argv)


def generator_config(args) -> dict:
    cfg = dict(type=args.generator)
    cfg.update({k: getattr(args, k) for k in GENERATOR_OPTIONS if getattr(args, k) is not None})
    for item in args.set:
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'--set {item!r}: expected KEY=VALUE')
        try:
            cfg[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            cfg[key] = value
    return cfg


def collect(sources, data_root):
    images = []
    for source in map(Path, sources):
        if source.suffix == '.py':
            images += dataset_images(source, data_root)
        elif source.is_dir():
            found = images_in(source)
            if not found:
                raise FileNotFoundError(f'folder {source} holds no image')
            images += found
        elif source.is_file():
            images.append(source)
        else:
            raise FileNotFoundError(f'no config, folder or image file: {source}')
    return list(dict.fromkeys(images))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        images = collect(args.sources, args.data_root)
        generator = build_mask_generator(generator_config(args), args.vfm_path).to(args.device)
        report = generate_mask_files(generator, images, args.out_dir, args.format)
    except (FileNotFoundError, ValueError, MaskFileError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{report.written} mask file(s) written to {args.out_dir}'
          + (f'; {report.kept} kept from an earlier run' if report.kept else ''))
    for message in report.failed:
        print(f'error: {message}', file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == '__main__':
    sys.exit(main())
