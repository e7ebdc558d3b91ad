"""A local web page: segment any image with any vocabulary and see the outliers.

    python tools/webui.py [--clip-path ViT-B/16] [--method sfp] [--vfm-path dino_vitb8]
        [--sam-path sam_vit_b] [--masks M]
        [--host 127.0.0.1] [--port 7860]

Open the printed address in a browser.  The page takes an uploaded (or dropped, or
bundled) image and a vocabulary (a preset or free text with synonyms) and shows the
segmentation with its legend, each class's share of the image, the outliers the
detector found, optionally per-block CLS attention, and the label map as a PNG.  Needs
the `webui` extra (pip install -e .[webui]; `make webui` installs it and starts this).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sfp.models.segmentor import sam_methods, vfm_methods  # noqa: E402
from sfp.webui import (  # noqa: E402
    WebDemo,
    available_methods,
    build_app,
    import_gradio,
    launch,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clip-path', default='ViT-B/16',
                        help="CLIP name ('ViT-B/16', downloaded once) or checkpoint file")
    parser.add_argument('--method', default='sfp', choices=available_methods(),
                        help='segmentation method selected when the page opens')
    parser.add_argument('--vfm-path',
                        help=f"vision foundation model of the methods that read one "
                             f"({', '.join(vfm_methods())}): name ('dino_vitb8', downloaded "
                             "once) or file; loaded when such a method is first used")
    parser.add_argument('--sam-path',
                        help=f"SAM of the methods that read it ({', '.join(sam_methods())}): "
                             "name ('sam_vit_b', downloaded once) or file; loaded when such a "
                             "method is first used")
    parser.add_argument('--masks',
                        help="class-agnostic regions for every method: a folder of mask "
                             "files or a generator ('PanopticCut'); their borders are shown "
                             "(default: each method's own, LaVG's panoptic cut)")
    parser.add_argument('--vocab', default='voc21', help='vocabulary shown when the page opens')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (0.0.0.0 exposes the page to the network)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--device', help='cuda, cpu ... (default: CUDA when available)')
    parser.add_argument('--precision', choices=['fp32', 'fp16', 'bf16', 'fp64'])
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import_gradio()
    except ImportError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    demo = WebDemo(args.clip_path, device=args.device, precision=args.precision,
                   vfm_path=args.vfm_path, sam_path=args.sam_path, masks=args.masks)
    kind, message = demo.banner()
    print(f'{kind}: {message}', file=sys.stderr if kind != 'info' else sys.stdout)
    app = build_app(demo, args.vocab, args.method)
    try:
        launch(app, args.host, args.port, block=False)
    except OSError as err:  # Gradio's message names the port
        print(f'error: cannot serve on {args.host}:{args.port} ({err}); choose another '
              f'--port', file=sys.stderr)
        return 2
    print(f'SFP web demo on http://{args.host}:{args.port} (Ctrl+C stops it)', flush=True)
    app.block_thread()
    return 0


if __name__ == '__main__':
    sys.exit(main())
