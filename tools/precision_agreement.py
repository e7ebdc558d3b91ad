"""How often lower precisions predict the same class as a reference precision.

    python tools/precision_agreement.py demo/images --backbone ViT-B/16 --random \
        [--reference fp32] [--precisions fp16 bf16] [--vocab voc21] [--device cuda]

Segments each image in every precision (same weights, same vocabulary) and prints the
share of pixels whose label equals the reference's, per image and overall.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sfp import clip  # noqa: E402
from sfp.apis import init_segmentor, segment_images  # noqa: E402
from sfp.datasets import read_image  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--backbone', default='ViT-B/16')
    parser.add_argument('--random', action='store_true', help='random weights (architecture)')
    parser.add_argument('--vocab', default='voc21')
    parser.add_argument('--reference', default='fp32')
    parser.add_argument('--precisions', nargs='+', default=['fp16', 'bf16'])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    paths = [p for item in args.images for p in
             (sorted(Path(item).glob('*.jpg')) if Path(item).is_dir() else [Path(item)])]
    images = [read_image(p) for p in paths]
    weights = clip.random_model(args.backbone) if args.random else args.backbone
    labels = {}
    for precision in [args.reference, *args.precisions]:
        model = weights if not args.random else clip.random_model(args.backbone)
        segmentor = init_segmentor(model, args.vocab, device=args.device, precision=precision,
                                   return_probs=False)
        labels[precision] = [segment_images(segmentor, [img])[0].pred_sem_seg.data.cpu()
                             for img in tqdm(images, desc=precision, unit='image')]
    print(f'backbone {args.backbone}{" (random weights)" if args.random else ""}, '
          f'vocabulary {args.vocab}, device {args.device}; agreement with {args.reference}:')
    print('| image | ' + ' | '.join(args.precisions) + ' |')
    print('|---|' + '---:|' * len(args.precisions))
    totals = {p: [0, 0] for p in args.precisions}
    for i, path in enumerate(paths):
        cells = []
        for p in args.precisions:
            same = (labels[p][i] == labels[args.reference][i])
            totals[p][0] += int(same.sum())
            totals[p][1] += same.numel()
            cells.append(f'{same.float().mean().item() * 100:.2f}%')
        print(f'| {path.name} | ' + ' | '.join(cells) + ' |')
    print('| all pixels | ' + ' | '.join(f'{totals[p][0] / totals[p][1] * 100:.2f}%'
                                        for p in args.precisions) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
